"""JSON logs of the real server: every line is JSON, one summary line per request carrying its request id."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from leadscore.api.schemas import EXAMPLE_REQUEST

pytestmark = pytest.mark.e2e


def log_lines(server, wanted: int, timeout: float = 10.0) -> list[dict]:
    """The server's log parsed line by line, once at least `wanted` request summary lines are written."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
        if sum(line.get("event") == "request" for line in lines) >= wanted or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_every_line_is_json_and_each_request_has_a_summary(server):
    """All output lines are JSON objects; each request gets one summary with id, route, status, leads, duration."""
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        scored = http.post("/api/v1/scoring/score", json=EXAMPLE_REQUEST)
        traced = http.post(
            "/api/v1/scoring/score", json={"leads": [{}, {}, {}]}, headers={"X-Request-ID": "trace-abc.1"}
        )
        invalid = http.post("/api/v1/scoring/score", json={"leads": []})
        missing = http.get("/api/v1/nope")
    responses = [scored, traced, invalid, missing]

    lines = log_lines(server, wanted=len(responses) + 1)  # + the readiness probe of start-up
    assert all(isinstance(line, dict) and line.get("level") and line.get("timestamp") for line in lines)
    summaries = {line["request_id"]: line for line in lines if line.get("event") == "request"}

    expected = [
        (scored, "/api/v1/scoring/score", 200, 1),
        (traced, "/api/v1/scoring/score", 200, 3),
        (invalid, "/api/v1/scoring/score", 422, 0),
        (missing, "/api/v1/nope", 404, 0),
    ]
    for response, route, status, leads in expected:
        request_id = response.headers["x-request-id"]
        summary = summaries[request_id]
        assert (summary["route"], summary["status"], summary["leads"]) == (route, status, leads)
        assert isinstance(summary["duration_ms"], float)
        assert summary["duration_ms"] >= 0.0
    assert scored.headers["x-request-id"] == "batch-scoring-001"
    assert traced.headers["x-request-id"] == "trace-abc.1"
