"""POST /api/v1/outcomes: what became of scored leads, validated like scoring and durable when acknowledged."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from leadscore.api.middleware import REQUEST_ID_PATTERN, request_context
from leadscore.api.routes import error_responses
from leadscore.api.schemas import field_error, parse_body
from leadscore.api.security import API_KEY_SECURITY, authenticate, presented_key
from leadscore.config import Settings
from leadscore.errors import FieldError, ServiceUnavailable, UnsupportedMediaType
from leadscore.lake.sink import LakeSink
from leadscore.outcomes.schema import EXAMPLE_OUTCOME, MAX_OUTCOMES, OutcomeIn, to_columns
from leadscore.outcomes.sink import open_outcomes_sink
from leadscore.outcomes.table import distinct, outcome_batch

SOURCE: Final = "api"


class OutcomesRequest(BaseModel):
    """1 to 1,000 outcomes of scored leads."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"request_id": "crm-sync-001", "outcomes": [EXAMPLE_OUTCOME]}]}
    )

    request_id: str | None = Field(
        default=None, pattern=REQUEST_ID_PATTERN, description="Caller's id for the request; generated when absent."
    )
    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=MAX_OUTCOMES)


class OutcomesAccepted(BaseModel):
    """The outcomes are kept (fsync'd in the lake's spool) and reach the outcomes table within minutes."""

    status: Literal["accepted"] = "accepted"
    request_id: str
    received: int = Field(description="Outcomes in the request.")
    recorded: int = Field(description="Distinct outcomes recorded (the same outcome twice in a request counts once).")
    duplicates: int = Field(description="Outcomes that repeated an earlier one of the same request.")
    processing_time_ms: float


@dataclass
class OutcomeSinkSlot:
    """Where the route finds the outcomes sink: set by the app's lifespan (None: the lake is off)."""

    sink: LakeSink | None = None

    def open(self, settings: Settings) -> None:
        """Start the outcomes sink of `settings` (beside the predictions' sink)."""
        self.sink = open_outcomes_sink(settings)
        self.sink.start()

    def close(self, timeout: float) -> None:
        """Commit what the sink holds within `timeout` seconds (what is left stays on the spool, adoptable)."""
        if self.sink is not None:
            self.sink.close(timeout)


def _problem(error: dict[str, Any]) -> FieldError:
    """A validation error as a FieldError: `outcomes[3].occurred_at` is item 3 (as `lead_index`), field occurred_at."""
    found = field_error(error)
    loc = tuple(error.get("loc", ()))
    if len(loc) >= 2 and loc[0] == "outcomes" and isinstance(loc[1], int):
        return found.model_copy(update={"lead_index": loc[1], "field": ".".join(map(str, loc[2:])) or None})
    return found


def parse_outcomes(body: bytes) -> OutcomesRequest:
    """The validated request; MalformedRequest (400) or ValidationFailed (422) naming every bad item and field."""
    return parse_body(OutcomesRequest, body, _problem)


def outcomes_router(slot: OutcomeSinkSlot) -> APIRouter:
    """The outcomes route, recording through the sink `slot` holds."""
    router = APIRouter(prefix="/api/v1", tags=["outcomes"])

    @router.post(
        "/outcomes",
        status_code=202,
        response_model=OutcomesAccepted,
        responses=error_responses(400, 401, 408, 413, 415, 422, 500, 503),
        openapi_extra={
            "security": API_KEY_SECURITY,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OutcomesRequest"}}},
            },
        },
        summary="Record outcomes of scored leads",
    )
    async def record_outcomes(request: Request) -> OutcomesAccepted:
        """Record 1 to 1,000 outcomes (conversions, stages) of scored leads; 202 once they are kept durably.

        The same outcome (lead, occurred_at, outcome, converted, stage) sent again is stored again but counted once:
        readers of the outcomes table deduplicate by its `outcome_id`.
        """
        start = time.perf_counter()
        authenticate(request, presented_key(request.headers))
        sink = slot.sink
        if sink is None:
            raise ServiceUnavailable("outcomes are not recorded: the data lake is off", headers={"Retry-After": "60"})
        sink.check_capacity()
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise UnsupportedMediaType("send the outcomes as application/json")
        payload = parse_outcomes(await request.body())
        ctx = request_context(request.scope)
        if payload.request_id:
            ctx.set_request_id(payload.request_id)
        batch = outcome_batch(
            to_columns(payload.outcomes), received_at=datetime.now(UTC), request_id=ctx.request_id, source=SOURCE
        )
        # The same outcome twice in one request is spooled once; across requests the readers deduplicate.
        unique = distinct(batch)
        await sink.record(unique)
        return OutcomesAccepted(
            request_id=ctx.request_id,
            received=batch.num_rows,
            recorded=unique.num_rows,
            duplicates=batch.num_rows - unique.num_rows,
            processing_time_ms=round((time.perf_counter() - start) * 1000.0, 3),
        )

    return router


def install_outcomes_openapi(app: FastAPI) -> None:
    """Add the outcomes request's schemas to the app's OpenAPI document (the route parses its body itself)."""
    base = app.openapi

    def document() -> dict[str, Any]:
        schema = base()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "OutcomesRequest" not in components:
            request_schema = OutcomesRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(request_schema.pop("$defs", {}))
            components["OutcomesRequest"] = request_schema
        return schema

    app.openapi = document  # type: ignore[method-assign]
