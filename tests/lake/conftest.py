"""Fixtures for lake tests: a bucket per test on the session's Ceph RGW server (tests/conftest.py), and moto's Glue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.rgw import RgwServer
from tests.support.server import free_port

REGION = "us-east-1"


def make_bucket(rgw: RgwServer) -> str:
    """A fresh bucket on the RGW server, made by its admin user."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    rgw.filesystem(REGION, allow_bucket_creation=True).create_dir(bucket)
    return bucket


@pytest.fixture
def s3_env(rgw: RgwServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh bucket, and the environment a server process needs to use it as its lake.

    The table's catalog is a SQLite file beside the test (a SQL catalog on S3 data, as a single-host deployment
    would run); the data and metadata files are on RGW.
    """
    bucket = make_bucket(rgw)
    env = {
        "AWS_ACCESS_KEY_ID": rgw.access_key,
        "AWS_SECRET_ACCESS_KEY": rgw.secret_key,
        "AWS_EC2_METADATA_DISABLED": "true",
        "LEADSCORE_LAKE_URI": f"s3://{bucket}/predictions",
        "LEADSCORE_LAKE_CATALOG_URI": f"sqlite:///{tmp_path / 'catalog.db'}",
        "LEADSCORE_S3_ENDPOINT_URL": rgw.endpoint,
        "LEADSCORE_S3_REGION": REGION,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Moto's server (Glue and S3 on one loopback port): the one fake allowed, for the Glue catalog path."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
