"""Every error status answers in the one envelope: status, code, message, request_id, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from leadscore.app import create_app
from leadscore.model.bundle import Scorer

SCORE = "/api/v1/scoring/score"
ENVELOPE_KEYS = {"status", "code", "message", "request_id", "errors"}


def assert_envelope(response, status: int, code: str) -> dict:
    """The response has `status`, the envelope with `code`, and the request id also sent as X-Request-ID."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["status"] == "error"
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["errors"], list)
    assert body["request_id"]
    assert response.headers["x-request-id"] == body["request_id"]
    return body


class _FailingScorer(Scorer):
    """A ready scorer whose predictions blow up, as an unexpected fault would."""

    def predict_proba(self, _matrix):
        raise RuntimeError("boom: secret internal detail")


class _UnreadyScorer(Scorer):
    """A scorer that never finished its warm-up."""


@pytest.fixture
def failing_client(settings, tiny_scorer) -> Iterator[TestClient]:
    """The app with a scorer that raises on every prediction (logs captured: tracebacks render slowly)."""
    scorer = _FailingScorer(tiny_scorer.booster, tiny_scorer.manifest)
    scorer.ready = True
    with (
        capture_logs(),
        TestClient(create_app(settings, scorer=scorer), raise_server_exceptions=False) as test_client,
    ):
        yield test_client


@pytest.fixture
def unready_client(settings, tiny_scorer) -> Iterator[TestClient]:
    """The app with a loaded but not warmed-up scorer."""
    scorer = _UnreadyScorer(tiny_scorer.booster, tiny_scorer.manifest)
    with TestClient(create_app(settings, scorer=scorer), raise_server_exceptions=False) as test_client:
        yield test_client


def test_422_validation(client):
    """A contract violation is a 422 validation_error listing the field."""
    body = assert_envelope(client.post(SCORE, json={"leads": []}), 422, "validation_error")
    assert body["errors"][0]["field"] == "leads"
    assert set(body["errors"][0]) == {"lead_index", "field", "location", "message", "type"}


def test_400_malformed_json(client):
    """A body that is not JSON is a 400 malformed_json with no field errors."""
    response = client.post(SCORE, content=b'{"leads": [', headers={"content-type": "application/json"})
    body = assert_envelope(response, 400, "malformed_json")
    assert body["errors"] == []


def test_400_empty_body(client):
    """An empty JSON body is a 400 malformed_json."""
    response = client.post(SCORE, content=b"", headers={"content-type": "application/json"})
    assert_envelope(response, 400, "malformed_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_415_non_json_content_type(client, content_type):
    """A body not declared as JSON (or not declared at all) is a 415."""
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(SCORE, content=b'{"leads": [{}]}', headers=headers)
    assert_envelope(response, 415, "unsupported_media_type")


def test_413_oversize_body(client, settings):
    """A body over the size limit is a 413 payload_too_large."""
    body = b'{"leads": [' + b" " * (settings.max_body_bytes + 1) + b"]}"
    response = client.post(SCORE, content=body, headers={"content-type": "application/json"})
    assert_envelope(response, 413, "payload_too_large")


def test_404_unknown_route(client):
    """An unknown path is a 404 not_found naming it."""
    body = assert_envelope(client.get("/api/v1/nope"), 404, "not_found")
    assert "/api/v1/nope" in body["message"]


def test_405_wrong_method(client):
    """GET on the scoring route is a 405 with an Allow header."""
    response = client.get(SCORE)
    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_500_unexpected_fault(failing_client):
    """An unexpected fault is a 500 internal_error that keeps the request id and leaks no internals."""
    response = failing_client.post(SCORE, json={"request_id": "fault-1", "leads": [{}]})
    body = assert_envelope(response, 500, "internal_error")
    assert body["request_id"] == "fault-1"
    assert "secret" not in response.text
    assert "boom" not in response.text


def test_500_is_logged_with_the_request_id(failing_client):
    """The traceback line of an unexpected fault carries the request id the caller was given."""
    with capture_logs() as logs:
        failing_client.post(SCORE, json={"request_id": "fault-2", "leads": [{}]})
    faults = [line for line in logs if line["event"] == "unhandled_error"]
    assert len(faults) == 1
    assert faults[0]["request_id"] == "fault-2"
    assert faults[0]["error_type"] == "RuntimeError"


def test_503_not_ready(unready_client):
    """Scoring before the model is warmed up is a 503 with Retry-After."""
    response = unready_client.post(SCORE, json={"leads": [{}]})
    assert_envelope(response, 503, "service_unavailable")
    assert response.headers["retry-after"]


def test_error_keeps_the_callers_header_id(client):
    """An error response reports the caller's X-Request-ID."""
    response = client.post(SCORE, json={"leads": []}, headers={"X-Request-ID": "caller-7"})
    assert assert_envelope(response, 422, "validation_error")["request_id"] == "caller-7"
