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


def test_lines_follow_stdout_when_it_is_replaced(capsys):
    """A logger used before stdout was replaced writes to the new stdout (the stream is looked up per line)."""
    from leadscore.telemetry.logging import configure_logging, get_logger  # noqa: PLC0415

    configure_logging("INFO")
    log = get_logger("leadscore.test")
    log.info("first")
    capsys.readouterr()
    log.info("second", n=2)
    line = json.loads(capsys.readouterr().out.strip())
    assert (line["event"], line["n"], line["logger"], line["level"]) == ("second", 2, "leadscore.test", "info")


def test_a_closed_stream_does_not_fail_the_caller():
    """Logging to a closed stream drops the line instead of raising into the request that logs."""
    from leadscore.telemetry.logging import configure_logging, get_logger  # noqa: PLC0415

    attempts: list[str] = []

    class Closed:
        """A stream that was closed under the logger."""

        def write(self, text: str) -> int:
            attempts.append(text)
            raise ValueError("I/O operation on closed file.")

        def flush(self) -> None:
            """Never reached."""

    configure_logging("INFO", Closed())  # type: ignore[arg-type]
    try:
        get_logger("leadscore.test").info("dropped")  # raises nothing
    finally:
        configure_logging("INFO")
    assert len(attempts) == 1
    assert '"dropped"' in attempts[0]


def test_a_line_logged_while_a_line_is_being_written_does_not_deadlock():
    """A line logged from inside a line being written (as SIGTERM's handler can) is written; nothing hangs."""
    import threading  # noqa: PLC0415

    from leadscore.telemetry.logging import configure_logging, get_logger  # noqa: PLC0415

    log = get_logger("leadscore.test")
    written: list[str] = []

    class Interrupted:
        """A stream whose first write is interrupted by another log line, like a signal handler that logs."""

        def write(self, text: str) -> int:
            if not written:
                written.append("outer-started")
                log.info("from_the_handler")
            written.append(text)
            return len(text)

        def flush(self) -> None:
            """Nothing buffered."""

    configure_logging("INFO", Interrupted())  # type: ignore[arg-type]
    try:
        worker = threading.Thread(target=log.info, args=("outer",), daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive()
    finally:
        configure_logging("INFO")
    events = [json.loads(text)["event"] for text in written[1:]]
    assert events == ["from_the_handler", "outer"]


def test_library_lines_follow_stdout_when_it_is_replaced(capsys):
    """Standard-library lines (uvicorn, httpx) go to the stdout of the moment, as JSON."""
    import logging  # noqa: PLC0415

    from leadscore.telemetry.logging import configure_logging  # noqa: PLC0415

    configure_logging("INFO")
    capsys.readouterr()
    logging.getLogger("some.library").warning("careful %s", "now")
    line = json.loads(capsys.readouterr().out.strip())
    assert (line["event"], line["logger"], line["level"]) == ("careful now", "some.library", "warning")


def test_library_lines_keep_their_extra_fields_as_keys(capsys):
    """A standard-library line's `extra` fields (the model's predictor choice) become JSON keys of its line."""
    import logging  # noqa: PLC0415

    from leadscore.telemetry.logging import configure_logging  # noqa: PLC0415

    configure_logging("INFO")
    capsys.readouterr()
    logging.getLogger("leadscore.model.predictors").info("chosen", extra={"predictor": "onedal", "block_rows": 80})
    line = json.loads(capsys.readouterr().out.strip())
    assert (line["predictor"], line["block_rows"]) == ("onedal", 80)
