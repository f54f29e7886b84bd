"""Prometheus metrics in one process: what a request records, the lake's API, and GET /metrics."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram

from leadscore.api.schemas import parse_score_request, to_columns
from leadscore.app import create_app
from leadscore.scoring import ScoredBatch, score_columns
from leadscore.telemetry import metrics
from leadscore.telemetry.emf import EmfAggregator
from tests.support.leads import synthetic_leads
from tests.support.waiting import wait_until_async

SCORE = "/api/v1/scoring/score"


@pytest.fixture(autouse=True)
def nothing_pending():
    """Figures another test left pending are written before this one reads its `before` values."""
    metrics.flush_pending()


def value(name: str, **labels: str) -> float:
    """The sample's current value in this process (0 when it does not exist yet)."""
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def scored_batch(scorer, leads: list[dict]) -> ScoredBatch:
    """`leads` validated and scored as the API would."""
    body = parse_score_request(orjson.dumps({"leads": leads}))
    return score_columns(scorer, to_columns(body.leads), len(body.leads), datetime.now(UTC))


def samples(histogram: Histogram) -> list[tuple[str, dict[str, str], float]]:
    """The histogram's samples (without _created), values rounded."""
    return [
        (s.name, s.labels, round(s.value, 9))
        for family in histogram.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]


def test_metrics_import_nothing_above_telemetry():
    """telemetry/metrics.py takes plain values or its own protocols: it imports neither scoring nor model nor api."""
    tree = ast.parse(Path(metrics.__file__).read_text(encoding="utf-8"))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    above = ("leadscore.scoring", "leadscore.model", "leadscore.api", "leadscore.app", "leadscore.lake")
    assert not [m for m in imported if m.startswith(above)]


def test_bulk_observation_equals_observing_one_by_one():
    """observe_many gives exactly the buckets, count and sum of calling observe for every value."""
    values = np.random.default_rng(3).uniform(0.2, 1.0, 500)
    values[:5] = [0.3, 0.4, 1.0, 0.95, 0.2]  # on bucket bounds: `le` is inclusive
    bulk = Histogram("x", "x", buckets=metrics.CONFIDENCE_BUCKETS, registry=CollectorRegistry())
    single = Histogram("x", "x", buckets=metrics.CONFIDENCE_BUCKETS, registry=CollectorRegistry())
    metrics.observe_many(bulk, values)
    for v in values:
        single.observe(float(v))
    assert samples(bulk) == samples(single)


def test_bulk_observation_counts_values_past_the_last_bound_in_inf():
    """A value above every bound is counted in the +Inf bucket only."""
    histogram = Histogram("y", "y", buckets=(1.0, 2.0), registry=CollectorRegistry())
    metrics.observe_many(histogram, np.asarray([5.0]))
    buckets = {s[1]["le"]: s[2] for s in samples(histogram) if s[0] == "y_bucket"}
    assert buckets == {"1.0": 0.0, "2.0": 0.0, "+Inf": 1.0}


def test_bulk_observation_of_nothing_changes_nothing():
    """An empty array leaves the histogram as it was."""
    histogram = Histogram("z", "z", buckets=(1.0,), registry=CollectorRegistry())
    metrics.observe_many(histogram, np.asarray([], dtype=np.float64))
    assert value_of(histogram, "z_count") == 0.0


def value_of(histogram: Histogram, name: str) -> float:
    """One sample of the histogram by name."""
    return next(s[2] for s in samples(histogram) if s[0] == name)


def test_request_is_counted_by_method_route_and_status():
    """A finished request adds one to its (method, route, status) series and its latency to the sum."""
    labels = {"method": "POST", "route": "/api/v1/scoring/score", "status": "422"}
    before = value("leadscore_http_request_duration_seconds_count", **labels)
    before_sum = value("leadscore_http_request_duration_seconds_sum", **labels)
    metrics.Recorder()("POST", "/api/v1/scoring/score", 422, 0.25, None)
    metrics.flush_pending()
    assert value("leadscore_http_request_duration_seconds_count", **labels) == before + 1
    assert value("leadscore_http_request_duration_seconds_sum", **labels) == pytest.approx(before_sum + 0.25)


def test_unmatched_routes_and_odd_methods_get_fixed_labels():
    """Unknown paths and methods never become label values (no unbounded series from scanners)."""
    labels = {"method": "OTHER", "route": metrics.UNMATCHED_ROUTE, "status": "404"}
    before = value("leadscore_http_request_duration_seconds_count", **labels)
    metrics.observe_request("BREW", None, 404, 0.001)
    assert value("leadscore_http_request_duration_seconds_count", **labels) == before + 1


def test_scored_batch_counts_leads_scores_confidence_and_model_time(tiny_scorer):
    """A batch adds its leads, its per-score counts (summing to the leads), confidences and one model time."""
    batch = scored_batch(tiny_scorer, synthetic_leads(40, seed=2))
    expected = np.bincount(batch.scores, minlength=6)[1:]
    before_scores = [value("leadscore_lead_scores_total", score=str(s)) for s in range(1, 6)]
    before = (
        value("leadscore_leads_scored_total"),
        value("leadscore_score_confidence_ratio_count"),
        value("leadscore_model_inference_seconds_count"),
    )
    metrics.Recorder()("POST", "/api/v1/scoring/score", 200, 0.01, batch)
    metrics.flush_pending()
    after_scores = [value("leadscore_lead_scores_total", score=str(s)) for s in range(1, 6)]
    assert [a - b for a, b in zip(after_scores, before_scores, strict=True)] == expected.tolist()
    assert value("leadscore_leads_scored_total") - before[0] == 40
    assert value("leadscore_score_confidence_ratio_count") - before[1] == 40
    assert value("leadscore_model_inference_seconds_count") - before[2] == 1


def test_warnings_are_counted_by_field(tiny_scorer):
    """Each input warning adds one to its field's counter."""
    batch = scored_batch(tiny_scorer, [{"company_size": "Gigantic"}, {"company_size": "Tiny-ish"}, {}])
    before = value("leadscore_lead_warnings_total", field="company_size")
    metrics.Recorder()("POST", "/api/v1/scoring/score", 200, 0.01, batch)
    metrics.flush_pending()
    assert value("leadscore_lead_warnings_total", field="company_size") - before == 2


def test_unknown_values_are_counted_by_field_and_value(tiny_scorer, monkeypatch):
    """Each value the category map does not know adds one to its (field, case-folded value) counter."""
    # A fresh label budget: tests run before this one in the same process may have used the field's share.
    monkeypatch.setattr(metrics, "_LABELLED", {})
    leads = [{"industry": "Underwater Basketry"}, {"industry": "UNDERWATER_BASKETRY"}, {"industry": "logistics"}]
    before = value("leadscore_unknown_category_values_total", field="industry", value="underwater basketry")
    metrics.Recorder()("POST", "/api/v1/scoring/score", 200, 0.01, scored_batch(tiny_scorer, leads))
    metrics.flush_pending()
    after = value("leadscore_unknown_category_values_total", field="industry", value="underwater basketry")
    assert after - before == 2
    assert value("leadscore_unknown_category_values_total", field="industry", value="logistics") == 0


def test_an_unknown_value_repeated_across_leads_counts_every_lead(tiny_scorer, monkeypatch):
    """A value sent by many leads (in several forms) is one label whose count is every lead that sent it."""
    monkeypatch.setattr(metrics, "_LABELLED", {})
    leads = [{"geography": "Atlantis"}] * 40 + [{"geography": "ATLANTIS"}] * 2 + [{"geography": "Lemuria"}]
    summary = metrics.summarize(scored_batch(tiny_scorer, leads))
    assert summary.unknown_values == {("geography", "atlantis"): 42, ("geography", "lemuria"): 1}


def test_unknown_value_labels_are_bounded_per_field(monkeypatch):
    """Past MAX_VALUE_LABELS distinct values of a field, unknown values share the `_other` label."""
    monkeypatch.setattr(metrics, "_LABELLED", {})
    labels = [metrics.value_label("geography", f"Atlantis {i}") for i in range(metrics.MAX_VALUE_LABELS + 5)]
    assert len(set(labels)) == metrics.MAX_VALUE_LABELS + 1
    assert labels[-5:] == [metrics.OTHER_VALUE] * 5
    assert metrics.value_label("geography", "ATLANTIS_0") == "atlantis 0"
    assert len(metrics.value_label("industry", "x" * 500)) == metrics.MAX_VALUE_LABEL_LENGTH


def test_summary_of_a_batch(tiny_scorer):
    """The batch summary holds per-score counts and the confidence sum, min and max of the batch."""
    batch = scored_batch(tiny_scorer, synthetic_leads(25, seed=4))
    summary = metrics.summarize(batch)
    assert sum(summary.score_counts) == summary.leads == 25
    assert summary.confidence_sum == pytest.approx(float(batch.confidence.sum()))
    assert summary.confidence_min == pytest.approx(float(batch.confidence.min()))


@pytest.mark.parametrize("leads", [1, 2, 8])
def test_summary_of_a_few_leads_is_the_array_summary(tiny_scorer, monkeypatch, leads):
    """A small batch summed in Python gets the summary the array path gives the same batch."""
    batch = scored_batch(tiny_scorer, synthetic_leads(leads, seed=leads))
    few = metrics.summarize(batch)
    monkeypatch.setattr(metrics, "_FEW_LEADS", 0)
    arrays = metrics.summarize(batch)
    assert few.confidence_sum == pytest.approx(arrays.confidence_sum, rel=1e-12)
    assert dataclasses.replace(few, confidence_sum=0.0) == dataclasses.replace(arrays, confidence_sum=0.0)


def test_a_confidence_on_a_bucket_bound_counts_in_that_bucket(tiny_scorer, monkeypatch):
    """Prometheus's `le`: a confidence equal to a bound lands in that bound's bucket, on both paths."""
    batch = scored_batch(tiny_scorer, synthetic_leads(1, seed=3))
    bound = metrics.CONFIDENCE_BUCKETS[3]
    on_bound = dataclasses.replace(batch, confidence=np.array([bound]))
    few = metrics.summarize(on_bound).confidence_buckets
    monkeypatch.setattr(metrics, "_FEW_LEADS", 0)
    assert few == metrics.summarize(on_bound).confidence_buckets
    assert few[3] == 1
    assert sum(few) == 1


def test_recorder_without_prometheus_feeds_only_emf(tiny_scorer):
    """With Prometheus off, nothing is recorded there while the EMF aggregate still counts the request."""
    batch = scored_batch(tiny_scorer, synthetic_leads(3, seed=1))
    emf = EmfAggregator("LeadScoring", "dev")
    before = value("leadscore_leads_scored_total")
    metrics.Recorder(prometheus=False, emf=emf)("POST", "/api/v1/scoring/score", 200, 0.01, batch)
    assert value("leadscore_leads_scored_total") == before
    document = emf.document(0)
    assert (document["Requests"], document["Leads"]) == (1, 3)


def test_a_finished_request_is_written_at_the_next_flush(tiny_scorer, monkeypatch):
    """Within FLUSH_SECONDS of the last flush a request's figures wait in the process; the flush writes them."""
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)
    before = value("leadscore_leads_scored_total")
    metrics.Recorder()("POST", "/api/v1/scoring/score", 200, 0.01, scored_batch(tiny_scorer, synthetic_leads(3)))
    assert value("leadscore_leads_scored_total") == before
    metrics.flush_pending()
    assert value("leadscore_leads_scored_total") == before + 3


def test_figures_are_written_once_flush_seconds_have_passed(tiny_scorer, monkeypatch):
    """A request finishing FLUSH_SECONDS or more after the last flush writes everything pending, itself included."""
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)
    before = value("leadscore_leads_scored_total")
    record = metrics.Recorder()
    record("POST", "/api/v1/scoring/score", 200, 0.01, scored_batch(tiny_scorer, synthetic_leads(2)))
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 0.0)
    record("POST", "/api/v1/scoring/score", 200, 0.01, scored_batch(tiny_scorer, synthetic_leads(5)))
    assert value("leadscore_leads_scored_total") == before + 7


def test_requests_written_together_count_as_each_would_alone(tiny_scorer, monkeypatch):
    """Requests flushed at once add what each would alone, model time once per request included."""
    monkeypatch.setattr(metrics, "_LABELLED", {})
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)
    batches = [
        scored_batch(tiny_scorer, synthetic_leads(30, seed=7)),
        scored_batch(tiny_scorer, [{"industry": "Underwater Basketry"}, {"company_size": "Gigantic"}]),
        scored_batch(tiny_scorer, [{"industry": "UNDERWATER_BASKETRY"}]),
    ]
    labels = {"method": "POST", "route": SCORE, "status": "200"}
    names = [
        ("leadscore_http_request_duration_seconds_count", labels),
        ("leadscore_leads_scored_total", {}),
        *(("leadscore_lead_scores_total", {"score": str(s)}) for s in range(1, 6)),
        ("leadscore_score_confidence_ratio_count", {}),
        ("leadscore_model_inference_seconds_count", {}),
        ("leadscore_lead_warnings_total", {"field": "industry"}),
        ("leadscore_lead_warnings_total", {"field": "company_size"}),
        ("leadscore_unknown_category_values_total", {"field": "industry", "value": "underwater basketry"}),
    ]
    before = [value(name, **lab) for name, lab in names]
    for batch in batches:
        metrics.Recorder()("POST", SCORE, 200, 0.02, batch)
    metrics.flush_pending()
    together = [value(name, **lab) - b for (name, lab), b in zip(names, before, strict=True)]
    before = [value(name, **lab) for name, lab in names]
    for batch in batches:
        metrics.observe_request("POST", SCORE, 200, 0.02)
        metrics.observe_batch(metrics.summarize(batch))
    alone = [value(name, **lab) - b for (name, lab), b in zip(names, before, strict=True)]
    assert together == alone
    assert together[0] == 3
    assert together[1] == 33
    assert together[-1] == 2


def test_the_periodic_flush_writes_an_idle_process_figures(tiny_scorer, monkeypatch):
    """With no further request, the lifespan's flusher writes what is pending within its interval."""
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)
    before = value("leadscore_leads_scored_total")
    metrics.Recorder()("POST", SCORE, 200, 0.01, scored_batch(tiny_scorer, synthetic_leads(4)))

    flushed = asyncio.Event()
    flush = metrics.flush_pending

    def flush_and_tell() -> None:
        flush()
        flushed.set()

    monkeypatch.setattr(metrics, "flush_pending", flush_and_tell)

    async def run() -> None:
        task = asyncio.create_task(metrics.flush_periodically(interval=0.01))
        try:
            await asyncio.wait_for(flushed.wait(), timeout=10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert value("leadscore_leads_scored_total") == before + 4


def test_a_scrape_writes_this_process_pending_figures_first(tiny_scorer, monkeypatch):
    """The exposition a process renders counts every request it has finished, flushed or not."""
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)
    before = value("leadscore_leads_scored_total")
    metrics.Recorder()("POST", SCORE, 200, 0.01, scored_batch(tiny_scorer, synthetic_leads(6)))
    body, _ = metrics.render()
    line = next(line for line in body.decode().splitlines() if line.startswith("leadscore_leads_scored_total "))
    assert float(line.split()[1]) == before + 6


def test_lake_backlog_sets_gauges_and_the_emf_snapshot():
    """set_lake_backlog sets the three backlog gauges and the figures EMF reports."""
    metrics.set_lake_backlog(12, 3400, 2.5)
    assert value("leadscore_lake_backlog_rows") == 12
    assert value("leadscore_lake_backlog_bytes") == 3400
    assert value("leadscore_lake_oldest_unflushed_age_seconds") == 2.5
    snapshot = metrics.lake_snapshot()
    assert (snapshot.backlog_rows, snapshot.backlog_bytes, snapshot.oldest_age_seconds) == (12, 3400, 2.5)
    metrics.set_lake_backlog(0, 0, 0.0)


def test_lake_flush_counts_flushes_rows_files_and_time():
    """observe_lake_flush adds one flush, its rows and files, and one duration."""
    before = (
        value("leadscore_lake_flushes_total"),
        value("leadscore_lake_flushed_rows_total"),
        value("leadscore_lake_files_written_total"),
        value("leadscore_lake_flush_duration_seconds_count"),
        metrics.lake_snapshot().flushes,
    )
    metrics.observe_lake_flush(rows=250, files=2, seconds=0.4)
    after = (
        value("leadscore_lake_flushes_total"),
        value("leadscore_lake_flushed_rows_total"),
        value("leadscore_lake_files_written_total"),
        value("leadscore_lake_flush_duration_seconds_count"),
        metrics.lake_snapshot().flushes,
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 250, 2, 1, 1]


def test_lake_upload_failure_is_counted():
    """observe_lake_upload_failure adds one to the counter and to the EMF figures."""
    before = (value("leadscore_lake_upload_failures_total"), metrics.lake_snapshot().upload_failures)
    metrics.observe_lake_upload_failure()
    assert value("leadscore_lake_upload_failures_total") == before[0] + 1
    assert metrics.lake_snapshot().upload_failures == before[1] + 1


def test_metrics_endpoint_serves_the_text_format_with_the_request_counted(client):
    """GET /metrics answers Prometheus text that already counts a scoring request made just before."""
    labels = {"method": "POST", "route": "/api/v1/scoring/score", "status": "200"}
    before = value("leadscore_http_request_duration_seconds_count", **labels)
    client.post(SCORE, json={"leads": synthetic_leads(2)})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    line = next(
        line
        for line in response.text.splitlines()
        if line.startswith("leadscore_http_request_duration_seconds_count{")
        and 'route="/api/v1/scoring/score"' in line
        and 'status="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == before + 1
    assert "process_resident_memory_bytes" in response.text
    assert 'leadscore_model_info{model_version="test-tiny"} 1.0' in response.text


def test_metrics_can_be_switched_off(settings):
    """With metrics_enabled false there is no /metrics route and requests record nothing."""
    before = value("leadscore_leads_scored_total")
    off = settings.model_copy(update={"metrics_enabled": False})
    with TestClient(create_app(off), raise_server_exceptions=False) as client:
        client.post(SCORE, json={"leads": synthetic_leads(2)})
        assert client.get("/metrics").status_code == 404
    assert value("leadscore_leads_scored_total") == before


def test_lake_backlog_poller_reports_until_cancelled():
    """The poller sets the backlog gauges from the lake's totals right away and on every interval."""
    calls: list[int] = []

    def totals() -> tuple[int, int, float]:
        calls.append(1)
        return 9, 900, 4.0

    async def run() -> None:
        task = asyncio.create_task(metrics.poll_lake_backlog(totals, interval=0.01))
        await wait_until_async(lambda: len(calls) >= 2, what="a report right away and one an interval later")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert len(calls) >= 2
    assert value("leadscore_lake_backlog_rows") == 9
    assert metrics.lake_snapshot().oldest_age_seconds == 4.0
    metrics.set_lake_backlog(0, 0, 0.0)
