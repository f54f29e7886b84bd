"""Health, readiness and model metadata endpoints."""

from __future__ import annotations

from importlib.metadata import version

from fastapi.testclient import TestClient

from leadscore.app import create_app
from leadscore.features.spec import INPUT_FIELDS, SPEC
from leadscore.model.bundle import Scorer


def test_live(client):
    """Liveness answers 200 while the process runs."""
    response = client.get("/api/v1/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


def test_ready_once_the_model_is_warm(client):
    """Readiness answers 200 with the model version once the model is loaded and warmed up."""
    response = client.get("/api/v1/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert response.json()["model_version"] == "test-tiny"


def test_not_ready_before_warm_up(settings, tiny_scorer):
    """Readiness is 503 (with Retry-After) for a loaded model that has not passed its warm-up."""
    cold = Scorer(tiny_scorer.booster, tiny_scorer.manifest)
    with TestClient(create_app(settings, scorer=cold), raise_server_exceptions=False) as cold_client:
        response = cold_client.get("/api/v1/health/ready")
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert response.headers["retry-after"]
        assert cold_client.get("/api/v1/health").json()["status"] == "degraded"
        assert cold_client.get("/api/v1/health/live").status_code == 200


def test_health_reports_status_versions_and_uptime(client):
    """GET /health gives status, model version, uptime and the package version."""
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert body["ready"] is True
    assert body["model_version"] == "test-tiny"
    assert body["version"] == version("leadscore")
    assert body["uptime_seconds"] >= 0.0
    assert body["environment"] == "dev"


def test_model_metadata(client, tiny_scorer):
    """GET /model gives version, training date, metrics and every feature with type, bounds, vocabulary."""
    body = client.get("/api/v1/model").json()
    manifest = tiny_scorer.manifest
    assert body["version"] == "test-tiny"
    assert body["created_at"] == manifest.created_at
    assert body["feature_spec_fingerprint"] == SPEC.fingerprint()
    assert body["metrics"]["accuracy"] == manifest.metrics["accuracy"]
    assert "confusion_matrix" in body["metrics"]
    assert body["training_data"]["rows"] == 3000
    inputs = {f["name"]: f for f in body["features"]["inputs"]}
    assert list(inputs) == [f.name for f in INPUT_FIELDS]
    assert inputs["industry"]["kind"] == "category"
    assert "Technology" in inputs["industry"]["vocabulary"]
    assert (inputs["email_engagement_score"]["minimum"], inputs["email_engagement_score"]["maximum"]) == (0.0, 1.0)
    assert inputs["website_sessions"]["kind"] == "int"
    assert len(body["features"]["engineered"]) == len(SPEC.engineered)
