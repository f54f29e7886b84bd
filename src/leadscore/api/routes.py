"""HTTP routes: scoring, health, model metadata."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from leadscore.api.deps import LifecycleDep, ScorerDep, SettingsDep
from leadscore.api.middleware import request_context
from leadscore.api.schemas import ErrorResponse, ScoreResponse, parse_score_request, to_columns
from leadscore.errors import PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType
from leadscore.features.spec import SPEC
from leadscore.scoring import ScoredBatch, score_columns

MAX_BODY_BYTES: Final = 2 * 1024 * 1024
ERROR_STATUSES: Final = (400, 401, 413, 415, 422, 500, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the error envelope for the given statuses."""
    return {status: {"model": ErrorResponse, "description": "Error envelope."} for status in statuses}


router = APIRouter(prefix="/api/v1")


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it as soon as it passes `limit` bytes (whatever Content-Length claims)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def render_scores(request_id: str, batch: ScoredBatch, lead_ids: list[Any], processing_ms: float) -> bytes:
    """The success body; built directly with orjson because it is the hot path."""
    warnings: list[list[dict[str, str]]] = [[] for _ in range(batch.size)]
    for w in batch.encoded.warnings:
        warnings[w.lead_index].append({"field": w.field, "value": w.value, "message": w.message})
    prediction_ms = round(batch.prediction_ms, 3)
    scores = [
        {
            "lead_id": lead_id,
            "score": score,
            "confidence": confidence,
            "probabilities": probabilities,
            "features_used": used,
            "prediction_time_ms": prediction_ms,
            "warnings": lead_warnings,
        }
        for lead_id, score, confidence, probabilities, used, lead_warnings in zip(
            lead_ids,
            batch.scores.tolist(),
            batch.confidence.tolist(),
            batch.probabilities.tolist(),
            batch.encoded.features_used.tolist(),
            warnings,
            strict=True,
        )
    ]
    return orjson.dumps(
        {
            "request_id": request_id,
            "timestamp": batch.scored_at,
            "total_leads": batch.size,
            "processing_time_ms": round(processing_ms, 3),
            "scores": scores,
            "model_version": batch.model_version,
            "status": "success",
        },
        option=orjson.OPT_UTC_Z,
    )


SCORE_OPENAPI: Final = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}},
    }
}


async def score(request: Request, scorer: ScorerDep, lifecycle: LifecycleDep) -> Response:
    """Score 1 to 500 leads. Scores come back in request order."""
    start = time.perf_counter()
    ctx = request_context(request.scope)
    if lifecycle.draining or not scorer.ready:
        raise ServiceUnavailable("the service is not ready to score", headers={"Retry-After": "1"})
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("send the leads as application/json")
    body = await read_body(request, MAX_BODY_BYTES)
    payload = parse_score_request(body)
    if payload.request_id:
        ctx.set_request_id(payload.request_id)
    leads = payload.leads
    ctx.leads = len(leads)
    columns = to_columns(leads)
    batch = score_columns(scorer, columns, len(leads), datetime.now(UTC))
    processing_ms = (time.perf_counter() - start) * 1000.0
    body_out = render_scores(ctx.request_id, batch, columns["lead_id"], processing_ms)
    return Response(content=body_out, media_type="application/json")


for path, include in (("/scoring/score", True), ("/score", False)):
    router.add_api_route(
        path,
        score,
        methods=["POST"],
        response_model=ScoreResponse,
        responses=error_responses(*ERROR_STATUSES),
        openapi_extra=SCORE_OPENAPI,
        summary="Score leads" if include else "Score leads (older path, same handler)",
        tags=["scoring"],
        include_in_schema=True,
    )


@router.get("/health/live", tags=["health"], responses=error_responses(500))
async def live() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "alive"}


@router.get("/health/ready", tags=["health"], responses=error_responses(503))
async def ready(scorer: ScorerDep, lifecycle: LifecycleDep) -> JSONResponse:
    """200 once the model is loaded and warmed up; 503 before that and while shutting down."""
    if lifecycle.draining:
        raise ServiceUnavailable("shutting down", headers={"Retry-After": "5"})
    if not scorer.ready:
        raise ServiceUnavailable("model not loaded", headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "model_version": scorer.version})


@router.get("/health", tags=["health"], responses=error_responses(500))
async def health(scorer: ScorerDep, lifecycle: LifecycleDep, settings: SettingsDep) -> dict[str, Any]:
    """Status, model version, uptime and package version."""
    return {
        "status": "ok" if scorer.ready and not lifecycle.draining else "degraded",
        "ready": scorer.ready and not lifecycle.draining,
        "model_version": scorer.version,
        "uptime_seconds": round(time.monotonic() - lifecycle.started_at, 3),
        "version": package_version("leadscore"),
        "environment": settings.env.value,
    }


@router.get("/model", tags=["model"], responses=error_responses(500))
async def model(scorer: ScorerDep) -> dict[str, Any]:
    """The model: version, training date, evaluation metrics, and the features it takes."""
    manifest = scorer.manifest
    return {
        "version": manifest.version,
        "created_at": manifest.created_at,
        "xgboost_version": manifest.xgboost_version,
        "predictor": scorer.predictor,
        "feature_spec_fingerprint": manifest.feature_spec_fingerprint,
        "params": manifest.params,
        "num_boost_round": manifest.num_boost_round,
        "metrics": manifest.metrics,
        "training_data": manifest.training_data,
        "features": SPEC.as_dict(),
    }
