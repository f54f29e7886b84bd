"""Fixtures for lake tests: a real Ceph RGW S3 server on loopback, a bucket per test, row readers."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from tests.support.rgw import RgwServer, start_rgw

from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.lake.store import S3Options, Store, open_store

REGION = "us-east-1"


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwServer]:
    """One real S3-protocol server (Ceph RADOS Gateway) for the session, on 127.0.0.1."""
    with start_rgw(tmp_path_factory.mktemp("rgw")) as server:
        yield server


@pytest.fixture
def s3_env(rgw: RgwServer) -> Iterator[dict[str, str]]:
    """A fresh bucket, and the environment a server process needs to use it as its lake."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    env = {
        "AWS_ACCESS_KEY_ID": rgw.access_key,
        "AWS_SECRET_ACCESS_KEY": rgw.secret_key,
        "AWS_EC2_METADATA_DISABLED": "true",
        "LEADSCORE_LAKE_URI": f"s3://{bucket}/predictions",
        "LEADSCORE_S3_ENDPOINT_URL": rgw.endpoint,
        "LEADSCORE_S3_REGION": REGION,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = pafs.S3FileSystem(
        endpoint_override=rgw.endpoint.removeprefix("http://"),
        scheme="http",
        access_key=rgw.access_key,
        secret_key=rgw.secret_key,
        region=REGION,
        allow_bucket_creation=True,
    )
    fs.create_dir(bucket)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def s3_store(env: dict[str, str]) -> Store:
    """The store a server with `env` writes to."""
    return open_store(env["LEADSCORE_LAKE_URI"], S3Options(env["LEADSCORE_S3_ENDPOINT_URL"], REGION))


def lake_rows(store: Store) -> pa.Table:
    """Every row in the lake."""
    keys = [k for k in store.list() if k.endswith(".parquet")]
    if not keys:
        return ARROW_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(store.path(k), filesystem=store.fs) for k in keys])


def row_counts(table: pa.Table) -> Counter[tuple[str, str]]:
    """How often each (request_id, lead_id) occurs."""
    return Counter(zip(table.column("request_id").to_pylist(), table.column("lead_id").to_pylist(), strict=True))


def local_store(path: Path) -> Store:
    """A local lake directory."""
    return open_store(str(path))
