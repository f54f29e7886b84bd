"""End to end: `leadscore serve` as a real process on a free port, over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from leadscore.api.schemas import EXAMPLE_REQUEST
from leadscore.model.bundle import BOOSTER_FILE, MANIFEST_FILE
from tests.support.leads import check_score_response, synthetic_leads
from tests.support.server import free_port, start_server

pytestmark = pytest.mark.e2e

SCORE = "/api/v1/scoring/score"


def post(server, body, **kwargs) -> httpx.Response:
    """POST a scoring request to a running server."""
    return httpx.post(f"{server.url}{SCORE}", json=body, timeout=30.0, **kwargs)


def test_full_example_over_http(shared_server):
    """The full example (all 34 custom features) scores with every response field right."""
    response = post(shared_server, EXAMPLE_REQUEST)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "batch-scoring-001"
    body = response.json()
    check_score_response(body, EXAMPLE_REQUEST, model_version="test-tiny")
    assert body["scores"][0]["features_used"] == 50


def test_500_lead_batch_over_http(shared_server):
    """A 500-lead batch of realistic leads scores in order with every field right."""
    request = {"request_id": "e2e-batch-500", "leads": synthetic_leads(500, seed=17)}
    response = post(shared_server, request)
    assert response.status_code == 200
    check_score_response(response.json(), request, model_version="test-tiny")


def test_validation_error_over_http(shared_server):
    """Over real HTTP a bad lead is a 422 in the envelope naming lead index and field."""
    response = post(shared_server, {"leads": [{}, {"email_engagement_score": 7}]})
    assert response.status_code == 422
    assert [(e["lead_index"], e["field"]) for e in response.json()["errors"]] == [(1, "email_engagement_score")]


def test_default_bundle_serves(tmp_path, monkeypatch):
    """Without LEADSCORE_MODEL_DIR the server uses the shipped model and scores the example and 500 leads."""
    monkeypatch.delenv("LEADSCORE_MODEL_DIR", raising=False)
    server = start_server(tmp_path)
    try:
        model = httpx.get(f"{server.url}/api/v1/model", timeout=10.0).json()
        assert model["training_data"]["rows"] >= 100_000
        example = post(server, EXAMPLE_REQUEST)
        assert example.status_code == 200
        check_score_response(example.json(), EXAMPLE_REQUEST, model_version=model["version"])
        request = {"request_id": "default-500", "leads": synthetic_leads(500, seed=19)}
        batch = post(server, request)
        assert batch.status_code == 200
        check_score_response(batch.json(), request, model_version=model["version"])
        # A real model separates leads: a 500-lead batch does not get one score for everyone.
        assert len({s["score"] for s in batch.json()["scores"]}) >= 3
    finally:
        assert server.stop() == 0


def test_two_workers_serve(tmp_path, tiny_bundle):
    """`--workers 2` starts, answers scoring requests, and stops cleanly on SIGTERM."""
    server = start_server(tmp_path, env={"LEADSCORE_MODEL_DIR": str(tiny_bundle)}, args=("--workers", "2"))
    try:
        for _ in range(6):
            response = post(server, EXAMPLE_REQUEST)
            assert response.status_code == 200
            check_score_response(response.json(), EXAMPLE_REQUEST, model_version="test-tiny")
    finally:
        assert server.stop() == 0


def run_serve(tmp_path, model_dir) -> subprocess.CompletedProcess[str]:
    """Run `leadscore serve` on a bundle and wait for it to exit (it must, for a bad bundle)."""
    env = {
        **os.environ,
        "LEADSCORE_MODEL_DIR": str(model_dir),
        "LEADSCORE_SPOOL_DIR": str(tmp_path / "spool"),
        "LEADSCORE_LAKE_URI": str(tmp_path / "lake"),
    }
    command = [sys.executable, "-m", "leadscore", "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_corrupt_booster_stops_the_server(tmp_path, bundle_copy):
    """A booster overwritten with garbage makes `leadscore serve` exit non-zero saying the booster is corrupt."""
    (bundle_copy / BOOSTER_FILE).write_bytes(b"\x00garbage, not a model\xff" * 64)
    result = run_serve(tmp_path, bundle_copy)
    assert result.returncode != 0
    assert f"cannot start: booster {BOOSTER_FILE} is corrupt" in result.stderr


def test_missing_manifest_stops_the_server(tmp_path, bundle_copy):
    """A bundle without its manifest makes `leadscore serve` exit non-zero naming the missing file."""
    (bundle_copy / MANIFEST_FILE).unlink()
    result = run_serve(tmp_path, bundle_copy)
    assert result.returncode != 0
    assert f"cannot start: model bundle is missing {MANIFEST_FILE}" in result.stderr


def test_spec_mismatch_stops_the_server(tmp_path, bundle_copy):
    """A bundle trained for another feature spec makes `leadscore serve` exit non-zero and say so."""
    manifest = bundle_copy / MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace('"sha256:', '"sha256:0', 1))
    result = run_serve(tmp_path, bundle_copy)
    assert result.returncode != 0
    assert "different feature spec" in result.stderr


def test_missing_bundle_directory_stops_the_server(tmp_path):
    """A model directory that does not exist makes `leadscore serve` exit non-zero."""
    result = run_serve(tmp_path, tmp_path / "no-such-bundle")
    assert result.returncode != 0
    assert "does not exist" in result.stderr
