import asyncio
import json

import pytest

from leadscore.telemetry import metrics
from leadscore.telemetry.emf import (
    DIMENSIONS,
    LATENCY_BINS,
    SCORE_METRICS,
    EmfAggregator,
    EmfEmitter,
    LakeSnapshot,
    bin_value,
    drift_documents,
    latency_bin,
    write_stdout,
)
from tests.support.waiting import wait_until_async
from tests.telemetry.emf_spec import emf_problems

NOW_MS = 1_790_000_000_000


def busy_aggregator() -> EmfAggregator:
    """An aggregator holding four requests (one 4xx, one 5xx) and a five-lead batch."""
    aggregator = EmfAggregator("LeadScoring", "prod", "1.0.0")
    for status, seconds in ((200, 0.004), (200, 0.012), (422, 0.001), (500, 0.2)):
        aggregator.add_request(status, seconds)
    aggregator.add_batch([3, 1, 0, 0, 1], confidence_sum=3.1, confidence_min=0.35, confidence_max=0.91)
    return aggregator


def test_document_with_traffic_and_lake_meets_the_specification():
    """A document of an interval with requests, leads and lake figures breaks no rule of the EMF spec."""
    document = busy_aggregator().document(NOW_MS, LakeSnapshot(10, 2048, 3.5, 2, 1))
    assert emf_problems(document, now_ms=NOW_MS) == []


def test_idle_document_meets_the_specification():
    """An interval without traffic still gives a valid document (zero counts, no empty statistic sets)."""
    document = EmfAggregator("LeadScoring", "dev").document(NOW_MS)
    assert emf_problems(document, now_ms=NOW_MS) == []
    assert document["Requests"] == 0
    assert "Latency" not in document
    assert "Confidence" not in document


def test_dimensions_are_environment_and_model_version_only():
    """The only dimension set is Environment + ModelVersion, with the aggregator's values."""
    document = busy_aggregator().document(NOW_MS)
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [list(DIMENSIONS)]
    assert (document["Environment"], document["ModelVersion"]) == ("prod", "1.0.0")


def test_namespace_is_the_configured_one():
    """The directive's namespace is the one the aggregator was given."""
    document = EmfAggregator("Custom/Space", "dev").document(NOW_MS)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Custom/Space"


def test_request_counts_split_server_and_client_errors():
    """Requests counts every request; Errors only 5xx; ClientErrors only 4xx."""
    document = busy_aggregator().document(NOW_MS)
    assert (document["Requests"], document["Errors"], document["ClientErrors"]) == (4, 1, 1)


def test_latency_is_a_histogram_in_milliseconds():
    """Latency carries Values/Counts for every request, and exact min, max, sum in milliseconds."""
    document = busy_aggregator().document(NOW_MS)
    latency = document["Latency"]
    assert sum(latency["Counts"]) == latency["Count"] == 4
    assert latency["Min"] == pytest.approx(1.0)
    assert latency["Max"] == pytest.approx(200.0)
    assert latency["Sum"] == pytest.approx(217.0)
    units = {m["Name"]: m["Unit"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["Latency"] == "Milliseconds"


def test_widely_spread_latencies_stay_within_one_hundred_values():
    """Latencies from 10 us to 1000 s still fit in EMF's limit of 100 values per metric."""
    aggregator = EmfAggregator("LeadScoring", "dev")
    seconds = 1e-5
    while seconds < 1000:
        aggregator.add_request(200, seconds)
        seconds *= 1.01
    document = aggregator.document(NOW_MS)
    assert len(document["Latency"]["Values"]) <= 100
    assert emf_problems(document, now_ms=NOW_MS) == []


def test_latency_bins_report_values_close_to_the_input():
    """Inside the binned range a latency is reported within 7.5 % of its true value."""
    for milliseconds in (0.2, 1.0, 3.3, 47.0, 999.0, 12_345.0):
        assert bin_value(latency_bin(milliseconds)) == pytest.approx(milliseconds, rel=0.075)


def test_latency_bins_clamp_at_both_ends():
    """Latencies below and above the range land in the first and last bin."""
    assert latency_bin(0.0) == 0
    assert latency_bin(10**9) == LATENCY_BINS - 1


def test_leads_per_score_and_confidence():
    """Leads per score are counted, and confidence is a statistic set whose Sum/Count is the mean."""
    document = busy_aggregator().document(NOW_MS)
    assert [document[name] for name in SCORE_METRICS] == [3, 1, 0, 0, 1]
    assert document["Leads"] == 5
    assert document["Confidence"] == {"Min": 0.35, "Max": 0.91, "Sum": 3.1, "Count": 5}


def test_each_interval_starts_from_zero():
    """A document takes the interval's sums: the next document counts only what came after."""
    aggregator = busy_aggregator()
    aggregator.document(NOW_MS)
    aggregator.add_request(200, 0.01)
    document = aggregator.document(NOW_MS + 60_000)
    assert (document["Requests"], document["Leads"]) == (1, 0)


def test_lake_flushes_and_failures_are_per_interval():
    """Lake flushes and upload failures are reported as the change since the previous document."""
    aggregator = EmfAggregator("LeadScoring", "prod")
    aggregator.document(NOW_MS, LakeSnapshot(flushes=4, upload_failures=1))
    document = aggregator.document(NOW_MS + 60_000, LakeSnapshot(5, 100, 1.25, flushes=6, upload_failures=1))
    assert (document["LakeFlushes"], document["LakeUploadFailures"]) == (2, 0)
    assert (document["LakeBacklogRows"], document["LakeBacklogBytes"], document["LakeOldestUnflushedAge"]) == (
        5,
        100,
        1.25,
    )


def test_the_checker_rejects_a_broken_document():
    """The spec checker itself finds missing members, bad units and too many dimensions."""
    document = busy_aggregator().document(NOW_MS)
    directive = document["_aws"]["CloudWatchMetrics"][0]
    directive["Metrics"].append({"Name": "Ghost", "Unit": "Furlongs"})
    directive["Dimensions"] = [[f"D{i}" for i in range(31)]]
    problems = emf_problems(document, now_ms=NOW_MS)
    assert any("Ghost is not a top-level member" in p for p in problems)
    assert any("Furlongs" in p for p in problems)
    assert any("at most 30" in p for p in problems)


def test_emitter_writes_one_line_per_interval_and_a_last_one_on_stop():
    """Started, the emitter writes a JSON line each interval; stopping writes the last partial interval."""
    lines: list[str] = []
    aggregator = busy_aggregator()

    async def run() -> None:
        emitter = EmfEmitter(aggregator, interval=0.05, write=lines.append)
        emitter.start()
        await wait_until_async(lambda: len(lines) >= 2, what="two intervals written")
        await emitter.stop()

    asyncio.run(run())
    documents = [json.loads(line) for line in lines]
    assert len(documents) >= 2
    assert sum(d["Requests"] for d in documents) == 4
    assert all(emf_problems(d) == [] for d in documents)


def test_emitter_keeps_going_when_stdout_fails():
    """A failed write is logged and the next interval is written again."""
    lines: list[str] = []

    def flaky(line: str) -> None:
        if not lines:
            lines.append("failed")
            raise BrokenPipeError("stdout closed")
        lines.append(line)

    async def run() -> None:
        emitter = EmfEmitter(EmfAggregator("LeadScoring", "dev"), interval=0.03, write=flaky)
        emitter.start()
        await wait_until_async(lambda: len(lines) >= 3, what="two lines written after the failed one")
        await emitter.stop()

    asyncio.run(run())
    assert len(lines) >= 3


def test_emitter_reads_the_lake_figures():
    """The emitter puts the lake figures it is given into each document."""
    lines: list[str] = []
    emitter = EmfEmitter(
        EmfAggregator("LeadScoring", "dev"), interval=60, lake=lambda: LakeSnapshot(7, 70, 0.5), write=lines.append
    )
    emitter.emit()
    assert json.loads(lines[0])["LakeBacklogRows"] == 7


def test_quarantined_segments_are_reported_for_the_alarm():
    """LakeQuarantinedSegments (the CDK alarm's metric) carries the quarantine count the lake last reported."""
    metrics.set_lake_quarantined(2)
    try:
        document = EmfAggregator("LeadScoring", "dev").document(0, metrics.lake_snapshot())
        assert document["LakeQuarantinedSegments"] == 2
        names = {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert "LakeQuarantinedSegments" in names
    finally:
        metrics.set_lake_quarantined(0)


def test_write_stdout_writes_a_whole_line(capsys):
    """The default writer puts the line and a newline on stdout."""
    write_stdout('{"a": 1}')
    assert capsys.readouterr().out == '{"a": 1}\n'


def test_drift_documents_meet_the_specification():
    """A drift summary under the service's dimensions, then one document per input with an Input dimension."""
    psi = {"email_engagement_score": 0.4, "industry": 0.01}
    documents = drift_documents("LeadScoring", "prod", "1.0.0", NOW_MS, psi, {"industry": 0.02}, 0.3)
    assert [emf_problems(d, now_ms=NOW_MS) for d in documents] == [[], [], []]
    summary, *per_input = documents
    assert summary["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [list(DIMENSIONS)]
    assert (summary["DriftMaxPsi"], summary["DriftMaxUnknownShare"], summary["DriftLowConfidenceShare"]) == (
        0.4,
        0.02,
        0.3,
    )
    assert {(d["Input"], d["DriftPsi"]) for d in per_input} == set(psi.items())
