"""The Grafana dashboard in the repo: valid JSON whose every query names metrics the service exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from leadscore.telemetry import metrics
from tests.support.leads import synthetic_leads

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "leadscore-dashboard.json"
METRIC_NAME = re.compile(r"\b((?:leadscore|process)_[a-z_]+)\b")


def load() -> dict:
    """The dashboard document."""
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def exposed_names(client) -> set[str]:
    """Sample names in the service's exposition after a scoring request and a lake report."""
    client.post("/api/v1/scoring/score", json={"leads": [*synthetic_leads(3, seed=8), {"company_size": "Vast"}]})
    metrics.observe_lake_flush(rows=1, files=1, seconds=0.1)
    metrics.observe_lake_upload_failure()
    metrics.set_lake_backlog(0, 0, 0.0)
    metrics.set_lake_quarantined(0)
    return {s.name for family in metrics.REGISTRY.collect() for s in family.samples}


def test_dashboard_is_an_importable_grafana_dashboard():
    """It has a uid, a title, a Prometheus data-source variable, and panels with unique ids inside the grid."""
    dashboard = load()
    assert dashboard["uid"] == "leadscore-overview"
    assert dashboard["title"] == "leadscore"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in dashboard["panels"])


def test_every_panel_explains_itself_and_queries_something():
    """Every non-row panel has a description and at least one query."""
    panels = [p for p in load()["panels"] if p["type"] != "row"]
    assert panels
    assert all(p["description"] and p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)


def test_every_metric_in_the_queries_is_exposed(client):
    """Each metric name a query uses is one the service actually exposes (no typo shows an empty graph)."""
    queried = {
        name
        for panel in load()["panels"]
        for target in panel.get("targets", [])
        for name in METRIC_NAME.findall(target["expr"])
    }
    assert queried
    assert queried - exposed_names(client) == set()


def test_dashboard_covers_the_issue_figures():
    """It charts requests, latency, leads, scores, confidence, model time, warnings, the lake and processes."""
    text = DASHBOARD.read_text(encoding="utf-8")
    for name in (
        "leadscore_http_request_duration_seconds_count",
        "leadscore_http_request_duration_seconds_bucket",
        "leadscore_leads_scored_total",
        "leadscore_lead_scores_total",
        "leadscore_score_confidence_ratio",
        "leadscore_model_inference_seconds_bucket",
        "leadscore_lead_warnings_total",
        "leadscore_lake_backlog_rows",
        "leadscore_lake_backlog_bytes",
        "leadscore_lake_oldest_unflushed_age_seconds",
        "leadscore_lake_flushes_total",
        "leadscore_lake_upload_failures_total",
        "leadscore_lake_quarantined_segments",
        "process_resident_memory_bytes",
    ):
        assert name in text
