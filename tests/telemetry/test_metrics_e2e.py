"""Metrics of a real server: a 2-worker scrape adds up exactly, and prod writes valid EMF to stdout."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from leadscore.api.security import generate_key
from tests.support.leads import synthetic_leads
from tests.support.server import ServerProcess, start_server
from tests.support.waiting import wait_until
from tests.telemetry.emf_spec import emf_problems

pytestmark = pytest.mark.e2e
SCORE = "/api/v1/scoring/score"
ROUTE = {"method": "POST", "route": SCORE}


def scrape(server: ServerProcess, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, by (name, sorted labels), over a fresh connection."""
    response = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def get(samples: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def leads_per_worker(directory: Path) -> dict[str, float]:
    """Leads each worker process counted in its own counter file."""
    found = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for s in metric.samples:
                if s.name == "leadscore_leads_scored_total" and s.value:
                    found[path.stem.split("_")[-1]] = s.value
    return found


def written_leads(directory: Path, sent: int, timeout: float = 30.0) -> dict[str, float]:
    """`leads_per_worker` once the workers' files hold all `sent` leads (each writes within FLUSH_SECONDS)."""
    deadline = time.monotonic() + timeout
    found = leads_per_worker(directory)
    while sum(found.values()) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
        found = leads_per_worker(directory)
    return found


def wait_for_requests(server: ServerProcess, requests: int, timeout: float = 30.0) -> None:
    """Until a scrape counts `requests` scoring requests (every worker has written its last ones), or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = scrape(server)
        counted = sum(
            get(samples, "leadscore_http_request_duration_seconds_count", **ROUTE, status=status)
            for status in ("200", "422")
        )
        if counted >= requests:
            return
        time.sleep(0.05)


def test_two_worker_scrape_counts_exactly_what_was_sent(tmp_path):
    """After known traffic spread over both workers, requests, leads and per-score counts match exactly.

    Each worker writes its figures within FLUSH_SECONDS of a request: the scrapes are made once both have.
    """
    metrics_dir = tmp_path / "metrics"
    server = start_server(tmp_path, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, args=("--workers", "2"))
    try:
        leads = synthetic_leads(40, seed=21)
        sizes = [1 + i % 7 for i in range(24)]
        scores: Counter[int] = Counter()
        sent = {"ok": 0, "invalid": 0, "leads": 0}

        def send(size: int) -> None:
            # A new connection per request, so the kernel hands them to both workers.
            body = httpx.post(f"{server.url}{SCORE}", json={"leads": leads[:size]}, timeout=30).json()
            scores.update(s["score"] for s in body["scores"])

        def invalid() -> int:
            return httpx.post(f"{server.url}{SCORE}", json={"leads": []}, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(10):  # bounded: until both workers have served (almost always the first round)
                list(pool.map(send, sizes))
                sent["ok"] += len(sizes)
                sent["leads"] += sum(sizes)
                sent["invalid"] += sum(status == 422 for status in pool.map(lambda _: invalid(), range(3)))
                if len(written_leads(metrics_dir, sent["leads"])) >= 2:
                    break
        per_worker = written_leads(metrics_dir, sent["leads"])
        assert len(per_worker) == 2, per_worker
        wait_for_requests(server, sent["ok"] + sent["invalid"])
        for _ in range(4):  # any worker may answer the scrape: every answer must hold the totals of both
            samples = scrape(server)
            ok = get(samples, "leadscore_http_request_duration_seconds_count", **ROUTE, status="200")
            assert ok == sent["ok"]
            assert (
                get(samples, "leadscore_http_request_duration_seconds_count", **ROUTE, status="422") == sent["invalid"]
            )
            assert get(samples, "leadscore_leads_scored_total") == sent["leads"] == sum(per_worker.values())
            by_score = {s: get(samples, "leadscore_lead_scores_total", score=str(s)) for s in range(1, 6)}
            assert by_score == {s: float(scores[s]) for s in range(1, 6)}
            assert sum(by_score.values()) == sent["leads"]
            assert get(samples, "leadscore_score_confidence_ratio_count") == sent["leads"]
            assert get(samples, "leadscore_model_inference_seconds_count") == sent["ok"]
        pids = {dict(labels)["pid"] for name, labels in samples if name == "process_resident_memory_bytes"}
        assert set(per_worker) <= pids
    finally:
        server.stop()


def test_metrics_need_a_key_when_keys_are_configured(tmp_path):
    """With API keys configured, /metrics answers 401 without a key and the metrics with one."""
    key, entry = generate_key("prometheus")
    server = start_server(tmp_path, env={"LEADSCORE_API_KEYS": entry.entry()})
    try:
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401
        assert get(scrape(server, **{"X-API-Key": key}), "leadscore_model_info", model_version="1.0.0") == 1.0
    finally:
        server.stop()


def test_prod_server_writes_valid_emf_that_counts_every_request(tmp_path):
    """In prod, stdout carries EMF lines that pass the spec checks and count every request and lead."""
    key, entry = generate_key("emf")
    server = start_server(
        tmp_path,
        env={"LEADSCORE_ENV": "prod", "LEADSCORE_API_KEYS": entry.entry(), "LEADSCORE_EMF_INTERVAL_SECONDS": "1"},
    )
    leads = 0
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as client:
            for size in (1, 2, 5, 50):
                assert client.post(SCORE, json={"leads": synthetic_leads(size)}).status_code == 200
                leads += size
            assert client.post(SCORE, json={"leads": []}).status_code == 422
            # At least one interval ends while the server runs (stopping writes the last one).
            wait_until(lambda: '"_aws"' in server.log(), what="an EMF document written while the server runs")
            assert httpx.post(f"{server.url}{SCORE}", json={"leads": []}, timeout=30).status_code == 401
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    documents = [line for line in lines if "_aws" in line]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(documents) >= 2
    assert [p for d in documents for p in emf_problems(d)] == []
    assert {(d["Environment"], d["ModelVersion"]) for d in documents} == {("prod", "1.0.0")}
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in documents} == {"LeadScoring"}
    assert sum(d["Requests"] for d in documents) == len(requests)
    assert sum(d["ClientErrors"] for d in documents) == 2
    assert sum(d["Leads"] for d in documents) == leads
    assert sum(d[f"LeadsScore{s}"] for d in documents for s in range(1, 6)) == leads
    assert all("request_id" not in d and "lead_id" not in d for d in documents)
