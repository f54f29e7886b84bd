"""Health, readiness and model metadata endpoints."""

from __future__ import annotations

from importlib.metadata import version

from fastapi.testclient import TestClient

from leadscore.app import create_app, open_lake
from leadscore.features.spec import INPUT_FIELDS, SPEC
from leadscore.model.bundle import Scorer


def test_live(client):
    """Liveness answers 200 while the process runs."""
    response = client.get("/api/v1/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


def test_ready_once_the_model_is_warm(client):
    """Readiness answers 200 once the model is loaded and warmed up, and says that and nothing more."""
    response = client.get("/api/v1/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_not_ready_while_the_lake_is_not_ready(settings):
    """Readiness is 503 while the lake says it is not ready, and names neither its URI nor its errors."""
    lake = open_lake(settings)
    lake.ready = lambda: False  # as while the spool is full
    lake.last_error = "OSError('short write to spool: 3 of 9 bytes')"
    with TestClient(create_app(settings, lake=lake), raise_server_exceptions=False) as full_client:
        response = full_client.get("/api/v1/health/ready")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert settings.lake_uri not in response.text
    assert "short write" not in response.text


def test_health_and_model_have_typed_response_schemas(client):
    """/health and /model are documented by named response models, not a bare object."""
    paths = client.get("/openapi.json").json()["paths"]
    for path, model in (("/api/v1/health", "HealthResponse"), ("/api/v1/model", "ModelResponse")):
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}


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
    assert body["importance"] == manifest.importance
    assert (inputs["email_engagement_score"]["minimum"], inputs["email_engagement_score"]["maximum"]) == (0.0, 1.0)
    assert inputs["website_sessions"]["kind"] == "int"
    assert len(body["features"]["engineered"]) == len(SPEC.engineered)
