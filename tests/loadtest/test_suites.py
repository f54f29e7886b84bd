"""The dev and prod suites against a real local server, the CLI's reports, and the lake marking their rows."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from leadscore import cli
from leadscore.api.security import generate_key
from leadscore.errors import LeadscoreError
from leadscore.loadtest.client import Sample
from leadscore.loadtest.report import PhaseResult
from leadscore.loadtest.suites import SUITES, prediction_problem, run_checks, run_suite
from leadscore.loadtest.thresholds import DEV, PROD, TargetEnv
from tests.support.lake import table_rows
from tests.support.server import ServerProcess, free_port, start_server

pytestmark = pytest.mark.e2e
LOAD_ID = re.compile(r"^load-test-\d+-\d+$")


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The service as shipped (packaged model), in dev mode."""
    server = start_server(tmp_path_factory.mktemp("dev"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prod_key() -> tuple[str, str]:
    """A fresh API key and the entry that configures it."""
    key, entry = generate_key("smoke")
    return key, entry.entry()


@pytest.fixture(scope="module")
def prod_server(tmp_path_factory: pytest.TempPathFactory, prod_key: tuple[str, str]) -> Iterator[ServerProcess]:
    """The service in prod mode: keys required."""
    server = start_server(
        tmp_path_factory.mktemp("prod"), env={"LEADSCORE_ENV": "prod", "LEADSCORE_API_KEYS": prod_key[1]}
    )
    yield server
    server.stop()


def sample(seconds: float, ok: bool = True) -> Sample:
    """One request of `seconds`."""
    return Sample("p", "load-test-1-1", ok, 200, seconds)


def test_throughput_and_concurrency_are_judged_on_concurrent_phases_only():
    """A slow sequential phase does not drag throughput down; concurrency comes from the parallel phases."""
    sequential = PhaseResult("maximum_batch", [sample(0.9)], wall_seconds=0.9, max_in_flight=1)
    parallel = PhaseResult("stress_test", [sample(0.05)] * 50, wall_seconds=0.5, max_in_flight=10, concurrent=True)
    checks = {c.name: c for c in run_checks(DEV, [sequential, parallel])}
    assert checks["throughput under concurrent load"].measured == pytest.approx(100.0)
    assert checks["concurrent requests in flight"].measured == 10
    assert all(c.passed for c in checks.values())


def test_run_wide_latency_checks_fail_when_requests_failed():
    """Average and p95 checks over failed requests fail, however fast the failures were."""
    checks = run_checks(DEV, [PhaseResult("stress_test", [sample(0.001, ok=False)] * 3, 0.003, 3, concurrent=True)])
    latency = [c for c in checks if c.name in ("average response time", "p95 response time")]
    assert len(latency) == 2
    assert not any(c.passed for c in latency)


def test_no_check_passes_against_a_dead_port():
    """Against a port nothing listens on, no latency check prints PASS and the verdict is FAIL."""
    report = asyncio.run(run_suite(TargetEnv.PROD, f"http://127.0.0.1:{free_port()}", request_timeout=2.0))
    latency = [c for c in report.all_checks if c.unit == "s"]
    assert latency
    assert not any(c.passed for c in latency)
    assert "PASS" not in report.text().replace("verdict: FAIL", "")


def test_a_url_without_scheme_is_refused_before_any_request():
    """`127.0.0.1:8000` is refused up front: no request reaches the transport."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    with pytest.raises(LeadscoreError, match="scheme"):
        asyncio.run(run_suite(TargetEnv.PROD, "127.0.0.1:8000", transport=httpx.MockTransport(handler)))
    assert sent == []


def test_cli_refuses_a_url_without_scheme(tmp_path):
    """`leadscore loadtest --url host:port` exits 2 with a message naming the problem, and writes no report."""
    result = CliRunner().invoke(
        cli.app, ["loadtest", "--env", "prod", "--url", "127.0.0.1:8000", "--report", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 2
    assert "http:// or https://" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_prod_limits_have_no_throughput_or_average_checks():
    """The prod smoke is judged on success rate (per-phase time limits aside), not on load figures."""
    checks = run_checks(PROD, [PhaseResult("single_request", [sample(0.1), sample(0.1, ok=False)], 0.2, 1)])
    assert [c.name for c in checks] == ["success rate"]
    assert not checks[0].passed


def good_prediction() -> dict:
    """A consistent one-lead prediction body."""
    return {
        "model_version": "1",
        "scores": [{"score": 2, "confidence": 0.6, "probabilities": [0.1, 0.6, 0.1, 0.1, 0.1]}],
    }


def test_a_consistent_prediction_has_no_problem():
    """Probabilities summing to 1 with score and confidence of the most probable class pass."""
    assert prediction_problem(good_prediction()) is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"model_version": ""}, "model_version"),
        ({"probabilities": [0.5, 0.6, 0.1, 0.1, 0.1]}, "sum"),
        ({"score": 3}, "most probable"),
        ({"confidence": 0.1}, "most probable"),
    ],
)
def test_an_inconsistent_prediction_is_a_problem(change, problem):
    """A missing model version, probabilities not summing to 1, or a wrong score or confidence are found."""
    body = good_prediction()
    if "model_version" in change:
        body.update(change)
    else:
        body["scores"][0].update(change)
    assert problem in (prediction_problem(body) or "")


def test_end_to_end_phase_fails_on_an_inconsistent_answer():
    """The end-to-end phase turns a 200 with inconsistent content into a failed request."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/live"):
            return httpx.Response(200, json={"status": "alive"})
        body = json.loads(request.content)
        scores = [{**good_prediction()["scores"][0], "lead_id": lead["lead_id"], "score": 5} for lead in body["leads"]]
        return httpx.Response(
            200,
            json={"request_id": body["request_id"], "status": "success", "total_leads": 1, "model_version": "1",
                  "scores": scores},
        )  # fmt: skip

    report = asyncio.run(
        run_suite(
            TargetEnv.PROD, "http://svc", phases=["end_to_end_prediction"], transport=httpx.MockTransport(handler)
        )
    )
    assert not report.passed
    assert "most probable" in (report.phases[0].samples[0].error or "")


def test_dev_suite_passes_against_the_local_service(dev_server):
    """The full dev suite runs every phase against the shipped service and meets the dev thresholds."""
    report = asyncio.run(run_suite(TargetEnv.DEV, dev_server.url))
    print(report.text())
    assert report.passed, report.text()
    assert [p.name for p in report.phases] == [p.__name__ for p in SUITES[TargetEnv.DEV]]
    requests = [s for p in report.phases for s in p.samples]
    assert len(requests) == 1 + 4 + 20 + 50 + 1 + 4
    assert all(LOAD_ID.match(s.request_id) for s in requests)
    assert max(s.leads for s in requests) == 500


def test_prod_suite_is_small_and_uses_the_smoke_ids(prod_server, prod_key):
    """The prod smoke passes with a key, sends 1-2 leads per request, under the published smoke ids."""
    report = asyncio.run(run_suite(TargetEnv.PROD, prod_server.url, api_key=prod_key[0]))
    print(report.text())
    assert report.passed, report.text()
    requests = [s for p in report.phases for s in p.samples]
    assert {s.request_id for s in requests} == {"prod-verification", "prod-baseline-test"}
    assert max(s.leads for s in requests) <= 2


def loadtest_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`leadscore loadtest ARGS` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "leadscore", "loadtest", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_dev_prints_the_report_and_writes_json(dev_server, tmp_path):
    """`leadscore loadtest --env dev` prints the report, writes the JSON report and exits 0 when it passes."""
    report = tmp_path / "dev.json"
    done = loadtest_cli("--env", "dev", "--url", dev_server.url, "--report", str(report))
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    assert "stress_test" in done.stdout
    assert json.loads(report.read_text())["overall"]["requests"] == 80


def test_cli_prod_takes_the_key_from_the_environment(prod_server, prod_key, tmp_path):
    """`leadscore loadtest --env prod` reads LOADTEST_API_KEY and passes against a keyed service."""
    report = tmp_path / "prod.json"
    done = loadtest_cli("--env", "prod", "--url", prod_server.url, "--report", str(report),
                        env={"LOADTEST_API_KEY": prod_key[0]})  # fmt: skip
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    assert prod_key[0] not in done.stdout + done.stderr + report.read_text()


def test_cli_exits_non_zero_when_a_threshold_fails(prod_server, tmp_path):
    """Without a key every prod request is refused: the verdict is FAIL, the exit code 1, the report written."""
    report = tmp_path / "r.json"
    args = ["loadtest", "--env", "prod", "--url", prod_server.url, "--report", str(report)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 1
    assert "verdict: FAIL" in result.output
    assert json.loads(report.read_text())["passed"] is False


def test_rows_written_by_load_and_smoke_tests_are_marked_is_test(tmp_path):
    """Every lake row of a dev and a prod run is marked is_test (request ids load-test-*, prod-*)."""
    server = start_server(tmp_path)
    try:
        asyncio.run(run_suite(TargetEnv.DEV, server.url, phases=["single_request", "batch_processing"]))
        asyncio.run(run_suite(TargetEnv.PROD, server.url))
    finally:
        assert server.stop() == 0  # a clean stop flushes the spool into the lake
    table = table_rows(server.env).select(["request_id", "is_test"])
    assert table.num_rows == 1 + 5 + 10 + 25 + 50 + 1 + 2 + 1 + 1
    assert pc.all(table["is_test"]).as_py()
