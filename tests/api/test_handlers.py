"""Errors are rendered once, in the envelope; the lake's own errors become 503s with Retry-After and no internals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from leadscore.api.handlers import render_error
from leadscore.api.schemas import EXAMPLE_REQUEST
from leadscore.app import create_app, open_lake
from leadscore.config import Settings
from leadscore.errors import ErrorResponse, FieldError, ValidationFailed
from leadscore.lake.errors import LakeError, SpoolFull, SpoolWriteFailed

SCORE = "/api/v1/scoring/score"


def test_render_error_builds_the_envelope_model() -> None:
    """render_error's body is the ErrorResponse model's, so the documented envelope and the sent one are one."""
    detail = FieldError(lead_index=0, field="industry", location="leads[0].industry", message="bad", type="x")
    response = render_error(ValidationFailed("1 invalid field(s)", (detail,)), "req-1")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert ErrorResponse.model_validate_json(response.body) == ErrorResponse(
        code="validation_error", message="1 invalid field(s)", request_id="req-1", errors=(detail,)
    )


def _failing_lake_client(settings: Settings, error: LakeError) -> Iterator[tuple[TestClient, list[dict]]]:
    lake = open_lake(settings)
    assert lake is not None

    async def record(_rows: object) -> None:
        raise error from OSError("short write to spool: 3 of 9 bytes")

    lake.record = record  # type: ignore[method-assign]
    with capture_logs() as logs, TestClient(create_app(settings, lake=lake), raise_server_exceptions=False) as client:
        yield client, logs


@pytest.fixture
def write_failed(settings: Settings) -> Iterator[tuple[TestClient, list[dict]]]:
    """The app over a lake whose spool writes fail (as on ENOSPC)."""
    yield from _failing_lake_client(settings, SpoolWriteFailed(retry_after=4.5))


@pytest.fixture
def spool_full(settings: Settings) -> Iterator[tuple[TestClient, list[dict]]]:
    """The app over a lake whose spool is at its cap."""
    yield from _failing_lake_client(settings, SpoolFull(retry_after=30.0))


def test_spool_write_failure_is_a_503_without_internals(write_failed) -> None:
    """A failed spool write answers 503 lake_write_failed with Retry-After; the detail goes to the log only."""
    client, logs = write_failed
    response = client.post(SCORE, json=EXAMPLE_REQUEST)
    assert response.status_code == 503
    assert response.json()["code"] == "lake_write_failed"
    assert response.headers["retry-after"] == "5"
    assert "short write" not in response.text
    assert any("short write" in str(line.get("cause")) for line in logs if line["event"] == "lake_write_failed")


def test_spool_full_is_a_503_with_retry_after(spool_full) -> None:
    """A full spool answers 503 lake_spool_full with the lake's Retry-After."""
    client, _ = spool_full
    response = client.post(SCORE, json=EXAMPLE_REQUEST)
    assert response.status_code == 503
    assert response.json()["code"] == "lake_spool_full"
    assert response.headers["retry-after"] == "30"
