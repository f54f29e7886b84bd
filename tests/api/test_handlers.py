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


@pytest.fixture
def lake_failing_with(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[TestClient, list[dict]]]:
    """The app over a lake whose spool writes raise `request.param` (a full spool, or ENOSPC underneath)."""
    lake = open_lake(settings)
    assert lake is not None
    error: LakeError = request.param

    async def record(_rows: object) -> None:
        raise error from OSError("short write to spool: 3 of 9 bytes")

    lake.record = record  # type: ignore[method-assign]
    with capture_logs() as logs, TestClient(create_app(settings, lake=lake), raise_server_exceptions=False) as client:
        yield client, logs


@pytest.mark.parametrize(
    ("lake_failing_with", "code", "retry_after"),
    [
        (SpoolWriteFailed(retry_after=4.5), "lake_write_failed", "5"),
        (SpoolFull(retry_after=30.0), "lake_spool_full", "30"),
    ],
    indirect=["lake_failing_with"],
)
def test_lake_errors_are_503s_with_retry_after_and_no_internals(lake_failing_with, code, retry_after) -> None:
    """A lake error answers 503 with its code and Retry-After (whole seconds, rounded up); details stay out of it."""
    client, _ = lake_failing_with
    response = client.post(SCORE, json=EXAMPLE_REQUEST)
    assert response.status_code == 503
    assert response.json()["code"] == code
    assert response.headers["retry-after"] == retry_after
    assert "short write" not in response.text


@pytest.mark.parametrize("lake_failing_with", [SpoolWriteFailed(retry_after=1.0)], indirect=True)
def test_a_spool_write_failure_is_logged_with_its_cause(lake_failing_with) -> None:
    """What the client is not told (the OS error under the failed write) is in the log line."""
    client, logs = lake_failing_with
    client.post(SCORE, json=EXAMPLE_REQUEST)
    assert any("short write" in str(line.get("cause")) for line in logs if line["event"] == "lake_write_failed")
