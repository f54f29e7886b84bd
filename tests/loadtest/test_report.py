"""Run figures, threshold checks and the text and JSON reports."""

from __future__ import annotations

import json

import pytest

from leadscore.loadtest.client import Sample
from leadscore.loadtest.report import Check, PhaseResult, Report, Stats


def samples(*seconds: float, failed: int = 0) -> list[Sample]:
    """Samples taking `seconds`; the first `failed` of them failed."""
    return [Sample("p", f"load-test-{i}-1", i >= failed, 200, s) for i, s in enumerate(seconds)]


def test_stats_of_requests():
    """Success rate, average, percentiles, maximum and throughput come from the samples and wall time."""
    stats = Stats.of(samples(*[0.01 * i for i in range(1, 101)], failed=5), wall_seconds=4.0)
    assert (stats.requests, stats.successes) == (100, 95)
    assert stats.success_rate == pytest.approx(0.95)
    assert stats.average == pytest.approx(0.505)
    assert stats.p50 == pytest.approx(0.505)
    assert stats.p95 == pytest.approx(0.9505)
    assert stats.p99 == pytest.approx(0.9901)
    assert stats.maximum == pytest.approx(1.0)
    assert stats.throughput == pytest.approx(25.0)


def test_stats_of_nothing_are_zero():
    """No requests give zero figures instead of an error."""
    stats = Stats.of([], wall_seconds=0.0)
    assert (stats.requests, stats.success_rate, stats.throughput) == (0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("measured", "limit", "at_least", "passed"),
    [(0.99, 1.0, False, True), (1.0, 1.0, False, False), (0.95, 0.95, True, True), (0.94, 0.95, True, False)],
)
def test_check_limits(measured, limit, at_least, passed):
    """Upper limits are strict (< limit), lower limits inclusive (>= limit), as the thresholds are published."""
    assert Check("x", measured, limit, at_least).passed is passed


def test_check_describes_itself_in_readable_units():
    """A check line shows the verdict, the name, the measured value and the limit in its unit."""
    assert Check("single request time", 0.0639, 1.0, at_least=False).describe().split() == [
        "PASS", "single", "request", "time", "63.9", "ms", "<", "1.00", "s"
    ]  # fmt: skip
    assert "95.0%" in Check("success rate", 0.5, 0.95, True, "%").describe()
    assert "2.0 req/s" in Check("throughput", 1.0, 2.0, True, "req/s").describe()
    assert Check("scores", 3, 2, True, "").describe().startswith("PASS")


def make_report(failing: bool = False) -> Report:
    """A one-phase report, passing or failing."""
    phase = PhaseResult("stress_test", samples(0.02, 0.03, 0.04, failed=1 if failing else 0), 0.1, 3)
    phase.checks = [Check("single request time", 0.04, 1.0, at_least=False)]
    run = [Check("success rate", phase.stats.success_rate, 0.95, True, "%")]
    return Report("dev", "http://127.0.0.1:1", "2026-01-01T00:00:00+00:00", "1.0.0", [phase], run)


def test_report_passes_only_when_every_check_passes():
    """The verdict is PASS with all checks holding and FAIL when any one fails."""
    assert make_report().passed
    assert not make_report(failing=True).passed


def test_text_report_lists_phases_checks_errors_and_verdict():
    """The text report has a row per phase and overall, every check, failed requests and the verdict."""
    text = make_report(failing=True).text()
    assert "stress_test" in text
    assert "overall" in text
    assert "FAIL  success rate" in text
    assert "error in stress_test: load-test-0-1" in text
    assert text.endswith("verdict: FAIL")


def test_json_report_holds_the_figures_and_verdict(tmp_path):
    """The JSON report is written with overall and per-phase figures, checks and the verdict."""
    path = tmp_path / "out" / "report.json"
    make_report().write_json(path)
    data = json.loads(path.read_text())
    assert data["passed"] is True
    assert data["overall"]["requests"] == 3
    assert set(data["overall"]) >= {"success_rate", "average", "p50", "p95", "p99", "throughput"}
    assert data["phases"][0]["checks"][0]["passed"] is True
    assert data["checks"][0]["name"] == "success rate"


def test_a_latency_check_fails_when_a_request_failed_however_fast():
    """A failed request never passes a latency check: a refused connection is fast, not a success."""
    check = Check.latency("health check time", Stats.of(samples(0.0012, failed=1), 0.0012), 0.5)
    assert not check.passed
    assert check.describe().startswith("FAIL")
    assert "1 request(s) failed" in check.describe()


def test_a_latency_check_passes_on_fast_successful_requests():
    """Every request succeeded under the limit: the latency check passes."""
    assert Check.latency("batch time", Stats.of(samples(0.2, 0.3), 0.5), 1.0).passed
