"""The public contract: request and response schemas, derived from the feature spec."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    create_model,
)
from pydantic_core import PydanticCustomError

from leadscore.api.middleware import REQUEST_ID_PATTERN
from leadscore.errors import FieldError, MalformedRequest, ValidationFailed
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, InputField, Kind

MAX_LEADS: Final = 500
# Bounds that keep every value finite after float32 encoding and inside int64 lake columns.
MAX_INT: Final = 1_000_000_000_000
MAX_ABS_FLOAT: Final = 1e30


def _as_utc(value: datetime) -> datetime:
    """A timestamp without offset is read as UTC; every timestamp is converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        # 0001-01-01T00:00:00+01:00 is a valid string whose UTC form is before year 1: a 422, not a 500.
        raise ValueError("timestamp is out of range once converted to UTC") from exc


# A date alone (`2025-01-02`, as CRMs export "last activity date") is that day's midnight, UTC.
ISO_DATETIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?)?$")


def _require_iso_text(value: object) -> object:
    """Timestamps are ISO 8601 strings; pydantic would also take 0 or "1700000000" as Unix times."""
    if not isinstance(value, str) or not ISO_DATETIME.match(value):
        raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 date-time string")
    return value


def _reject_text_and_bool(value: object) -> object:
    """Ints follow JSON Schema (15 and 15.0 are integers), but "15" and true are type errors, not numbers."""
    if isinstance(value, str | bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# ISO 8601 text only, read as UTC when it has no offset.
Timestamp = Annotated[datetime, BeforeValidator(_require_iso_text), AfterValidator(_as_utc)]


def _field_definition(spec: InputField) -> tuple[Any, Any]:
    extra: dict[str, Any] = {"description": spec.description}
    if spec.unit:
        extra["description"] = f"{spec.description} Unit: {spec.unit}."
    if spec.kind in (Kind.CATEGORY, Kind.TEXT):
        if spec.vocabulary:
            extra["examples"] = [spec.vocabulary[-1]]
            extra["description"] += " Known values (case-insensitive): " + ", ".join(spec.vocabulary) + "."
        return str | None, Field(default=None, max_length=spec.max_length, **extra)
    if spec.kind is Kind.INT:
        # Lax int without the str/bool coercions; the check runs only on INT fields (6 per lead).
        json_int = Annotated[int, Field(ge=spec.minimum, le=MAX_INT), BeforeValidator(_reject_text_and_bool)]
        return json_int | None, Field(default=None, **extra)
    if spec.kind is Kind.FLOAT:
        lower = spec.minimum if spec.minimum is not None else -MAX_ABS_FLOAT
        upper = spec.maximum if spec.maximum is not None else MAX_ABS_FLOAT
        # Strict: a JSON number (int or float) only; "0.5" or true is a type error, not silently a number.
        return float | None, Field(default=None, ge=lower, le=upper, allow_inf_nan=False, strict=True, **extra)
    if spec.kind is Kind.BOOL:
        return StrictBool | None, Field(default=None, **extra)
    return Timestamp | None, Field(default=None, **extra)


_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=False)

CustomFeatures: type[BaseModel] = create_model(
    "CustomFeatures",
    __config__=_FORBID,
    __doc__="Numeric custom features custom_feature_1..34; absent or null means missing.",
    **{f.name: _field_definition(f) for f in CUSTOM_FIELDS},  # type: ignore[call-overload]
)

Lead: type[BaseModel] = create_model(
    "Lead",
    __config__=_FORBID,
    __doc__="One lead. Every field is optional; missing inputs lower `features_used` and the model copes.",
    lead_id=(str | None, Field(default=None, max_length=128, description="Caller's id, echoed back.")),
    custom_features=(CustomFeatures | None, Field(default=None)),
    **{f.name: _field_definition(f) for f in CORE_FIELDS},  # type: ignore[call-overload]
)

EXAMPLE_LEAD: Final[dict[str, Any]] = {
    "company_size": "Enterprise",
    "industry": "Technology",
    "job_title": "VP Marketing",
    "seniority_level": "Executive",
    "geography": "North America",
    "email_engagement_score": 0.85,
    "website_sessions": 15,
    "pages_viewed": 45,
    "time_on_site": 32.5,
    "form_fills": 3,
    "content_downloads": 7,
    "campaign_touchpoints": 12,
    "last_campaign_interaction": "2024-08-20T10:30:00Z",
    "account_revenue": 5000000.0,
    "account_employees": 500,
    "existing_customer": False,
    "custom_features": {
        f"custom_feature_{i}": v
        for i, v in enumerate(
            [0.75, 1.2, 0.95, 2.1, 0.65, 1.8, 0.45, 3.2, 0.88, 1.45, 0.33, 2.7, 0.92, 1.1, 0.58, 2.3, 0.77,
             1.6, 0.41, 2.9, 0.69, 1.35, 0.82, 2.15, 0.54, 1.9, 0.73, 2.4, 0.61, 1.25, 0.89, 2.6, 0.47, 1.7],
            start=1,
        )
    },
}  # fmt: skip
EXAMPLE_REQUEST: Final[dict[str, Any]] = {"request_id": "batch-scoring-001", "leads": [EXAMPLE_LEAD]}


class ScoreRequest(BaseModel):
    """A batch of 1 to 500 leads to score."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_REQUEST]})

    request_id: str | None = Field(
        default=None,
        pattern=REQUEST_ID_PATTERN,
        description="Caller's id for the request (letters, digits, `._:-`, at most 128); generated when absent.",
    )
    leads: list[Lead] = Field(min_length=1, max_length=MAX_LEADS)
    explain: StrictBool | None = Field(
        default=None,
        description="Return each lead's `reasons` and `drivers`; absent or null means the service's default "
        "(off unless LEADSCORE_EXPLAIN_DEFAULT is set).",
    )


class LeadWarningOut(BaseModel):
    """A problem with one lead's input that did not stop it being scored."""

    field: str
    value: str
    message: str


class Factor(BaseModel):
    """One business field's part in a score: its value and how far it moved the predicted score's log-odds."""

    field: str = Field(description="The input field (`custom_feature_N` for custom features).")
    group: str = Field(description="company, industry, title, seniority, geography, account (fit); email, web, "
                       "content, campaign, recency (engagement); or custom.")  # fmt: skip
    value: str | float | int | bool | None = Field(description="The lead's value of the field, as sent.")
    contribution: float = Field(description="SHAP value, in log-odds of the predicted score, summed over the model "
                                "inputs derived from the field.")  # fmt: skip
    text: str = Field(description='A sentence for people, e.g. "Seniority: Executive raises the chance of a 5".')


class Reasons(BaseModel):
    """The fields that raise the predicted score's probability most, and those that lower it most (3 each)."""

    raising: list[Factor] = Field(max_length=3, description="Largest positive contributions first.")
    lowering: list[Factor] = Field(max_length=3, description="Most negative contributions first.")


class Drivers(BaseModel):
    """Contributions summed by driver; with `base` they add up to the model's log-odds of the predicted score."""

    base: float = Field(description="The log-odds of the predicted score for a lead about whom nothing is known.")
    fit: float = Field(description="Company, industry, title, seniority, geography and account fields.")
    engagement: float = Field(description="Email, web, content, campaign and recency fields.")
    custom: float = Field(description="The custom features.")


class LeadScore(BaseModel):
    """The score of one lead."""

    lead_id: str | None
    score: int = Field(ge=1, le=5, description="Most probable score, 1 (cold) to 5 (hot).")
    confidence: float = Field(description="Probability of `score`.")
    probabilities: list[float] = Field(description="Probability of each score 1..5.", min_length=5, max_length=5)
    features_used: int = Field(description="How many of the 50 inputs were present.")
    prediction_time_ms: float = Field(description="Model time for the batch this lead was scored in.")
    warnings: list[LeadWarningOut]
    reasons: Reasons | None = Field(default=None, description="Present when the request asked for `explain`.")
    drivers: Drivers | None = Field(default=None, description="Present when the request asked for `explain`.")


class ScoreResponse(BaseModel):
    """Scores in request order."""

    request_id: str
    timestamp: datetime
    total_leads: int
    processing_time_ms: float
    scores: list[LeadScore]
    model_version: str
    status: Literal["success"] = "success"


# The packaged model's answer to EXAMPLE_REQUEST (tests/api/test_openapi.py checks it still is).
EXAMPLE_RESPONSE: Final[dict[str, Any]] = {
    "request_id": "batch-scoring-001",
    "timestamp": "2026-12-01T09:34:03.487839Z",
    "total_leads": 1,
    "processing_time_ms": 1.058,
    "scores": [
        {
            "lead_id": None,
            "score": 5,
            "confidence": 0.860709,
            "probabilities": [0.001848, 0.005727, 0.033283, 0.098433, 0.860709],
            "features_used": 50,
            "prediction_time_ms": 0.295,
            "warnings": [],
        }
    ],
    "model_version": "1.0.0",
    "status": "success",
}


class LiveResponse(BaseModel):
    """The process runs."""

    status: Literal["alive"] = "alive"


class ReadyResponse(BaseModel):
    """The service takes scoring requests."""

    status: Literal["ready"] = "ready"


class HealthResponse(BaseModel):
    """Status, versions, uptime and the lake's backlog."""

    status: Literal["ok", "degraded"] = Field(description="ok when ready and not shutting down.")
    ready: bool = Field(description="Whether the service takes scoring requests.")
    model_version: str
    uptime_seconds: float = Field(description="Seconds since this worker started.")
    version: str = Field(description="Version of the leadscore package.")
    environment: str = Field(description="Deployment environment (dev or prod).")
    lake: dict[str, Any] | None = Field(description="The lake's backlog and upload state; null when it is off.")
    outcomes: dict[str, Any] | None = Field(
        default=None,
        description="The outcomes' backlog and upload state (the fields of `lake`); null when the lake is off.",
    )


class ModelResponse(BaseModel):
    """The served model: version, training, evaluation, predictor and every input feature."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    created_at: str = Field(description="When the bundle was trained (ISO 8601, UTC).")
    xgboost_version: str = Field(description="XGBoost version that trained it.")
    predictor: str = Field(description="Tree inference in use: onedal or xgboost.")
    predictor_fallback_reason: str | None = Field(description="Why XGBoost's predictor is used, when it is.")
    predictor_model: str | None = Field(
        description="Where oneDAL's model came from: `bundle` (its saved model.onedal.npz) or `converted` (from the "
        "booster at start); null when XGBoost's predictor is used."
    )
    feature_spec_fingerprint: str = Field(description="Hash of the feature spec the model was trained for.")
    params: dict[str, Any] = Field(description="XGBoost training parameters.")
    num_boost_round: int = Field(description="Boosting rounds per class.")
    metrics: dict[str, Any] = Field(description="Held-out evaluation: log loss, accuracy, AUC, confusion, calibration.")
    training_data: dict[str, Any] = Field(description="Summary of the training data.")
    features: dict[str, Any] = Field(description="Every input field and model input: type, bounds and vocabulary.")
    importance: dict[str, float] = Field(
        default_factory=dict,
        description="Global importance: mean |SHAP value| (log-odds of the predicted score) of each input field over "
        "held-out leads, largest first; empty for a bundle trained before it was recorded.",
    )


def field_error(err: dict[str, Any]) -> FieldError:
    """One pydantic error as a FieldError: `leads[3].industry` becomes lead_index 3, field "industry"."""
    loc = tuple(err.get("loc", ()))
    lead_index: int | None = None
    parts: list[str] = [str(p) for p in loc]
    if len(loc) >= 2 and loc[0] == "leads" and isinstance(loc[1], int):
        lead_index = loc[1]
        parts = [str(p) for p in loc[2:]]
    location = ""
    for p in loc:
        location += f"[{p}]" if isinstance(p, int) else (f".{p}" if location else str(p))
    return FieldError(
        location=location or "body",
        message=str(err.get("msg", "invalid")),
        type=str(err.get("type", "invalid")),
        lead_index=lead_index,
        field=".".join(parts) or None,
    )


_Body = TypeVar("_Body", bound=BaseModel)


def parse_body(model: type[_Body], body: bytes, detail: Callable[[dict[str, Any]], FieldError] = field_error) -> _Body:
    """`model` from a raw JSON body; MalformedRequest (400) or ValidationFailed (422) with every error as `detail`."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise MalformedRequest(f"body is not valid JSON: {errors[0]['msg']}") from exc
        details = tuple(detail(dict(e)) for e in errors)
        raise ValidationFailed(f"{len(details)} invalid field(s) in the request", details) from exc


def parse_score_request(body: bytes) -> ScoreRequest:
    """Validate a raw JSON body; raise MalformedRequest (400) or ValidationFailed (422) listing every error."""
    return parse_body(ScoreRequest, body)


def to_columns(leads: Sequence[Any]) -> dict[str, list[Any]]:
    """Turn validated leads into columns (field name -> one value per lead), the encoder's input."""
    columns: dict[str, list[Any]] = {f.name: [getattr(lead, f.name) for lead in leads] for f in CORE_FIELDS}
    customs = [lead.custom_features for lead in leads]
    for f in CUSTOM_FIELDS:
        columns[f.name] = [None if c is None else getattr(c, f.name) for c in customs]
    columns["lead_id"] = [lead.lead_id for lead in leads]
    return columns
