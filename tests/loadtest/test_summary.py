"""Deployment summaries built from real loadtest reports: one of a healthy server, one of a port nobody serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from leadscore.loadtest.summary import Deployment, Summary, read_report
from tests.support.server import free_port, start_server

pytestmark = pytest.mark.e2e

TAG, DIGEST = "v0.1.0-42", "sha256:" + "ab" * 32


def leadscore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `leadscore` command as the pipelines do."""
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`leadscore loadtest --env dev` reports: against a healthy server, and against a port where nothing listens."""
    work = tmp_path_factory.mktemp("summary")
    server = start_server(work)
    try:
        healthy = leadscore("loadtest", "--env", "dev", "--url", server.url, "--report", str(work / "healthy.json"))
    finally:
        server.stop()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    dead_url = f"http://127.0.0.1:{free_port()}"
    failed = leadscore("loadtest", "--env", "dev", "--url", dead_url, "--report", str(work / "failed.json"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    return {"healthy": work / "healthy.json", "failed": work / "failed.json"}


def summary(path: Path, **deployment: str) -> Summary:
    """The summary of a report file for a deployment."""
    return Summary(Deployment(**deployment), read_report(path))


def test_healthy_report_reads_passed_with_what_was_deployed(reports: dict[str, Path]) -> None:
    """A passing run's summary names tag, digest, model version and environment, and reads PASSED."""
    text = summary(reports["healthy"], environment="dev", image_tag=TAG, image_digest=DIGEST).markdown()
    assert text.startswith(f"## ✅ leadscore {TAG} deployed to dev: load test PASSED")
    assert f"| Image tag | `{TAG}` |" in text
    assert f"| Image digest | `{DIGEST}` |" in text
    assert "| Model version | `1.0.0` |" in text  # the packaged model, as the service answered
    assert "| Environment | dev |" in text
    assert "**Verdict: PASSED**" in text
    assert "FAIL" not in text


def test_summary_carries_the_reports_figures(reports: dict[str, Path]) -> None:
    """Requests, success rate, p95 and requests/s are the report's overall figures."""
    overall = json.loads(reports["healthy"].read_text())["overall"]
    text = summary(reports["healthy"]).markdown()
    row = next(line for line in text.splitlines() if line.startswith(f"| {overall['requests']} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        str(overall["requests"]),
        "100.0%",
        f"{overall['p95'] * 1000:.1f} ms",
        f"{overall['throughput']:.1f} req/s",
    ]


def test_every_threshold_is_a_row_with_its_result(reports: dict[str, Path]) -> None:
    """Each check of the report (phase and run-wide) appears once with its limit and result."""
    data = json.loads(reports["healthy"].read_text())
    checks = [c for p in data["phases"] for c in p["checks"]] + data["checks"]
    rows = [line for line in summary(reports["healthy"]).markdown().splitlines() if line.endswith("| pass |")]
    assert [r.split("|")[1].strip() for r in rows] == [c["name"] for c in checks]
    assert (
        f"**Verdict: PASSED** ({len(checks)} of {len(checks)} thresholds met)" in summary(reports["healthy"]).markdown()
    )


def test_failed_report_reads_failed(reports: dict[str, Path]) -> None:
    """A run against a dead port reads FAILED, marks the failed thresholds and lists the first errors."""
    text = summary(reports["failed"], environment="dev", image_tag=TAG).markdown()
    assert text.startswith(f"## ❌ leadscore {TAG} deployed to dev: load test FAILED")
    assert "| success rate | 0.0% | ≥ 95.0% | **FAIL** |" in text
    assert "ConnectError" in text
    assert "**Verdict: FAILED**" in text
    assert "| Model version | not given |" in text  # no answer, so no version to report


def test_pipeline_model_version_wins_over_the_reports(reports: dict[str, Path]) -> None:
    """--model-version names the deployed model even when the service answered with another."""
    assert summary(reports["healthy"], model_version="2.0.0").model_version == "2.0.0"


def test_command_prints_the_markdown(reports: dict[str, Path]) -> None:
    """`leadscore deploy-summary` prints the summary and exits 0, whatever the verdict."""
    result = leadscore(
        "deploy-summary", "--report", str(reports["failed"]), "--image-tag", TAG, "--image-digest", DIGEST,
        "--environment", "prod",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"## ❌ leadscore {TAG} deployed to prod: load test FAILED")
    assert f"`{DIGEST}`" in result.stdout


def test_command_refuses_a_missing_report(tmp_path: Path) -> None:
    """A report that is not there is an error (exit 2), not an empty summary."""
    result = leadscore("deploy-summary", "--report", str(tmp_path / "none.json"))
    assert result.returncode == 2
    assert "no loadtest report at" in result.stderr


def test_command_refuses_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    """A JSON file of another shape is refused with the reason."""
    (tmp_path / "other.json").write_text('{"hello": "world"}')
    result = leadscore("deploy-summary", "--report", str(tmp_path / "other.json"))
    assert result.returncode == 2
    assert "is not a loadtest report" in result.stderr


@dataclass
class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records what is POSTed to it and answers `status`."""

    status: int = 200
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    answer: bytes = b"{}"
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A Receiver serving in a thread, shut down afterwards."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers["Content-Length"]))
            state.raw.append(data)
            state.paths.append(self.path)
            state.headers.append(dict(self.headers))
            if self.headers.get("Content-Type", "").startswith("application/json"):
                state.bodies.append(json.loads(data))
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_webhook_receives_the_summary(reports: dict[str, Path], receiver: Receiver) -> None:
    """--notify-url POSTs one JSON message: the Markdown as `text`, and the verdict and figures as fields."""
    result = leadscore(
        "deploy-summary", "--report", str(reports["healthy"]), "--image-tag", TAG, "--image-digest", DIGEST,
        "--environment", "dev", "--notify-url", f"{receiver.url}/hooks/deploy",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert receiver.paths == ["/hooks/deploy"]
    (body,) = receiver.bodies
    overall = json.loads(reports["healthy"].read_text())["overall"]
    assert body["text"] == result.stdout
    assert (body["verdict"], body["passed"], body["environment"]) == ("PASSED", True, "dev")
    assert (body["image_tag"], body["image_digest"], body["model_version"]) == (TAG, DIGEST, "1.0.0")
    assert (body["success_rate"], body["p95_seconds"]) == (overall["success_rate"], overall["p95"])
    assert body["failed_checks"] == []


def test_webhook_gets_the_failed_checks(reports: dict[str, Path], receiver: Receiver) -> None:
    """A failed run's message says FAILED and names the thresholds that failed."""
    result = leadscore("deploy-summary", "--report", str(reports["failed"]), "--notify-url", receiver.url)
    assert result.returncode == 0, result.stderr
    (body,) = receiver.bodies
    assert (body["verdict"], body["passed"]) == ("FAILED", False)
    assert "success rate" in body["failed_checks"]


def test_webhook_that_refuses_fails_the_command(reports: dict[str, Path], receiver: Receiver) -> None:
    """A webhook answering 500 makes the command exit 1 (after printing the summary)."""
    receiver.status = 500
    result = leadscore("deploy-summary", "--report", str(reports["healthy"]), "--notify-url", receiver.url)
    assert result.returncode == 1
    assert "answered 500" in result.stderr
    assert "**Verdict: PASSED**" in result.stdout


def test_webhook_and_sns_are_exclusive(reports: dict[str, Path]) -> None:
    """One channel at a time: both options together are refused."""
    result = leadscore(
        "deploy-summary", "--report", str(reports["healthy"]), "--notify-url", "http://127.0.0.1:9/",
        "--sns-topic", "arn:aws:sns:eu-west-1:123456789012:deploys",
    )  # fmt: skip
    assert result.returncode == 2
    assert "not both" in result.stderr


def test_sns_topic_receives_the_summary(reports: dict[str, Path], receiver: Receiver) -> None:
    """--sns-topic publishes through the AWS SDK: subject is the title, message the JSON notification."""
    pytest.importorskip("boto3")
    receiver.answer = (
        b'<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
        b"<MessageId>m-1</MessageId></PublishResult><ResponseMetadata><RequestId>r-1</RequestId>"
        b"</ResponseMetadata></PublishResponse>"
    )
    topic = "arn:aws:sns:eu-west-1:123456789012:deploys"
    result = leadscore(
        "deploy-summary", "--report", str(reports["healthy"]), "--image-tag", TAG, "--sns-topic", topic,
        env={"AWS_ENDPOINT_URL_SNS": receiver.url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "message m-1" in result.stderr
    from urllib.parse import parse_qs  # noqa: PLC0415

    (form,) = [parse_qs(raw.decode()) for raw in receiver.raw]
    assert form["Action"] == ["Publish"]
    assert form["TopicArn"] == [topic]
    assert form["Subject"] == [f"leadscore {TAG} deployed to dev: load test PASSED"]
    assert json.loads(form["Message"][0])["verdict"] == "PASSED"
