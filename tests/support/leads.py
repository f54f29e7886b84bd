"""Realistic request bodies built from the synthetic data set, and a checker for the success response."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from leadscore.features.spec import INPUT_FIELDS, SCORES
from leadscore.loadtest.data import synthetic_leads as load_leads

RESPONSE_KEYS = {"request_id", "timestamp", "total_leads", "processing_time_ms", "scores", "model_version", "status"}
SCORE_KEYS = {"lead_id", "score", "confidence", "probabilities", "features_used", "prediction_time_ms", "warnings"}


def synthetic_leads(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """`n` leads in the API's shape, from the synthetic generator (missing values left out, ids lead-0..)."""
    return load_leads(n, seed=seed, prefix="lead")


def present_inputs(lead: dict[str, Any]) -> int:
    """How many of the 50 inputs a request lead carries (what `features_used` must report)."""
    customs = lead.get("custom_features") or {}
    return sum((lead.get(f.name) if not f.custom else customs.get(f.name)) is not None for f in INPUT_FIELDS)


def check_score_response(body: dict[str, Any], request: dict[str, Any], model_version: str) -> None:
    """Every field of a success response is present, typed and consistent with the request."""
    leads = request["leads"]
    assert set(body) == RESPONSE_KEYS
    assert body["status"] == "success"
    assert body["model_version"] == model_version
    if request.get("request_id"):
        assert body["request_id"] == request["request_id"]
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert body["total_leads"] == len(leads) == len(body["scores"])
    assert isinstance(body["processing_time_ms"], float)
    assert body["processing_time_ms"] >= 0.0
    stamp = datetime.fromisoformat(body["timestamp"])
    assert body["timestamp"].endswith("Z")
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
    for lead, result in zip(leads, body["scores"], strict=True):
        assert set(result) == SCORE_KEYS
        assert result["lead_id"] == lead.get("lead_id")
        probabilities = result["probabilities"]
        assert len(probabilities) == len(SCORES)
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-4)
        assert result["score"] in SCORES
        assert result["score"] == SCORES[probabilities.index(max(probabilities))]
        assert result["confidence"] == max(probabilities)
        assert result["features_used"] == present_inputs(lead)
        assert isinstance(result["prediction_time_ms"], float)
        assert result["prediction_time_ms"] >= 0.0
        assert result["warnings"] == []
