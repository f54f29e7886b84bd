"""Fixtures for batch tests: synthetic lead files, and a bucket on the session's real S3 server (tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from leadscore.training.contract import OUTCOME
from leadscore.training.synth import synthesize
from tests.lake.conftest import REGION, make_bucket
from tests.support.rgw import RgwServer

AS_OF: Final = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def lead_table(n: int, seed: int = 5) -> pa.Table:
    """`n` synthetic leads as a CRM export would hold them: lead ids lead-0.., the lead fields, no outcome."""
    table = synthesize(n, seed=seed).drop_columns([OUTCOME])
    return table.add_column(0, "lead_id", pa.array([f"lead-{i}" for i in range(n)]))


@pytest.fixture(scope="session")
def leads() -> pa.Table:
    """1,000 synthetic leads."""
    return lead_table(1000)


@pytest.fixture
def s3_bucket(rgw: RgwServer, monkeypatch: pytest.MonkeyPatch) -> tuple[str, pafs.S3FileSystem]:
    """A fresh bucket on the RGW server and a client of it; the AWS variables that reach it are set for the test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rgw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rgw.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", rgw.endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # What the batch reader sets for a custom endpoint, set here so that the test's own client has it and the
    # process environment is restored after the test.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    return make_bucket(rgw), rgw.filesystem(REGION)
