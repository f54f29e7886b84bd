"""HTTP routes: scoring, health, model metadata."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any, Final, cast

import orjson
from fastapi import APIRouter, Request, Response

from leadscore.api.decode import parse_leads
from leadscore.api.deps import LakeDep, LifecycleDep, OutcomesSinkDep, ScorerDep, SettingsDep, State
from leadscore.api.middleware import request_context
from leadscore.api.recording import lake_rows
from leadscore.api.schemas import (
    HealthResponse,
    LiveResponse,
    ModelResponse,
    ReadyResponse,
    ScoreResponse,
)
from leadscore.api.security import API_KEY_SECURITY, RequireApiKey, authenticate, presented_key
from leadscore.errors import ErrorResponse, ServiceUnavailable, UnsupportedMediaType
from leadscore.features.spec import SPEC
from leadscore.lake.records import is_test_request
from leadscore.model.reasons import render as render_reasons
from leadscore.scoring import ScoredBatch
from leadscore.telemetry import metrics

# Every status the scoring routes can answer with besides 200: 408/413/503 come from EdgeLimitsMiddleware.
ERROR_STATUSES: Final = (400, 401, 408, 413, 415, 422, 500, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the error envelope for the given statuses."""
    return {status: {"model": ErrorResponse, "description": "Error envelope."} for status in statuses}


router = APIRouter(prefix="/api/v1")


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def render_scores(
    request_id: str,
    batch: ScoredBatch,
    lead_ids: Sequence[Any],
    processing_ms: float,
    explained: Sequence[dict[str, Any]] | None = None,
) -> bytes:
    """The success body; built directly with orjson because it is the hot path.

    `explained`: per lead, its `reasons` and `drivers` (model/reasons.py `render`), added to its score.
    """
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
    if explained is not None:
        for lead_score, explanation in zip(scores, explained, strict=True):
            lead_score.update(explanation)
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
    "security": API_KEY_SECURITY,
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}},
    },
}


async def score(request: Request) -> Response:
    """Score 1 to 500 leads. Scores come back in request order, and are in the lake before the answer."""
    start = time.perf_counter()
    # No FastAPI dependencies on the hot path: solving them (the API key's two security schemes, the state) cost
    # about 15% of a 1-lead request's CPU. The route authenticates and reads the lifespan state itself.
    authenticate(request, presented_key(request.headers))
    state = cast(State, request.scope["state"])
    scorer, lifecycle, lake = state["scorer"], state["lifecycle"], state["lake"]
    settings, batcher = state["settings"], state["batcher"]
    ctx = request_context(request.scope)
    if lifecycle.draining or not scorer.ready:
        raise ServiceUnavailable("the service is not ready to score", headers={"Retry-After": "1"})
    if lake is not None:
        lake.check_capacity()
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("send the leads as application/json")
    # EdgeLimitsMiddleware bounds this read: 413 past max_body_bytes (whatever Content-Length says), 408 if slow.
    body = await request.body()
    payload = parse_leads(body)
    if payload.request_id:
        ctx.set_request_id(payload.request_id)
    ctx.leads = payload.size
    columns = payload.columns
    batch = await batcher.score(columns, payload.size, datetime.now(UTC))
    wants_explain = settings.explain_default if payload.explain is None else payload.explain
    explanations = await batcher.explanations.explain(scorer, batch) if wants_explain else None
    explained = render_reasons(explanations, columns) if explanations is not None else None
    processing_ms = (time.perf_counter() - start) * 1000.0
    if lake is not None:
        await lake.record(
            lake_rows(
                batch,
                columns,
                request_id=ctx.request_id,
                processing_ms=processing_ms,
                is_test=is_test_request(ctx.request_id, settings.test_request_patterns),
                environment=settings.env.value,
                api_key_id=ctx.api_key_id,
                explanations=explanations,
            )
        )
    ctx.batch = batch  # counted in the metrics only once it is answered (and recorded)
    body_out = render_scores(ctx.request_id, batch, columns["lead_id"], processing_ms, explained)
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
async def live() -> LiveResponse:
    """200 while the process runs."""
    return LiveResponse()


@router.get("/health/ready", tags=["health"], responses=error_responses(503))
async def ready(scorer: ScorerDep, lifecycle: LifecycleDep, lake: LakeDep) -> ReadyResponse:
    """200 once the model is loaded and warmed up and the lake accepts rows; 503 before that and while shutting down.

    Open without a key (load balancers probe it): it says ready or not, nothing about the lake or the model.
    """
    if lifecycle.draining:
        raise ServiceUnavailable("shutting down", headers={"Retry-After": "5"})
    if not scorer.ready:
        raise ServiceUnavailable("model not loaded", headers={"Retry-After": "1"})
    if lake is not None and not lake.ready():
        raise ServiceUnavailable("the data lake is not accepting rows", headers={"Retry-After": "30"})
    return ReadyResponse()


# Status and versions help an attacker more than a load balancer (which uses live/ready): key required.
@router.get("/health", tags=["health"], dependencies=[RequireApiKey], responses=error_responses(401, 500, 503))
async def health(
    scorer: ScorerDep, lifecycle: LifecycleDep, settings: SettingsDep, lake: LakeDep, outcomes: OutcomesSinkDep
) -> HealthResponse:
    """Status, model version, uptime and package version; the lake's backlog, for predictions and outcomes."""
    return HealthResponse(
        status="ok" if scorer.ready and not lifecycle.draining else "degraded",
        ready=scorer.ready and not lifecycle.draining,
        model_version=scorer.version,
        uptime_seconds=round(time.monotonic() - lifecycle.started_at, 3),
        version=package_version("leadscore"),
        environment=settings.env.value,
        lake=lake.status() if lake is not None else None,
        outcomes=outcomes.status() if outcomes is not None else None,
    )


@router.get("/model", tags=["model"], dependencies=[RequireApiKey], responses=error_responses(401, 500, 503))
async def model(scorer: ScorerDep) -> ModelResponse:
    """The model: version, training date, evaluation metrics, and the features it takes."""
    # The manifest's own fields by name (ModelResponse ignores those it does not publish), then the live ones.
    published = {
        **asdict(scorer.manifest),
        "predictor": scorer.predictor,
        "predictor_fallback_reason": scorer.predictor_fallback_reason,
        "predictor_model": scorer.predictor_model_source or None,
        "features": SPEC.as_dict(),
    }
    return ModelResponse(**published)


def prometheus_metrics() -> Response:
    """Prometheus metrics of every worker (text exposition format)."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
