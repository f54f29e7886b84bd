"""The public contract: request and response schemas, derived from the feature spec."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic_core import PydanticCustomError

from leadscore.errors import FieldError, MalformedRequest, ValidationFailed
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, InputField, Kind

MAX_LEADS: Final = 500
REQUEST_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
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


_ISO_DATETIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?$")


def _require_iso_text(value: object) -> object:
    """Timestamps are ISO 8601 strings; pydantic would also take 0 or "1700000000" as Unix times."""
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
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


class LeadWarningOut(BaseModel):
    """A problem with one lead's input that did not stop it being scored."""

    field: str
    value: str
    message: str


class LeadScore(BaseModel):
    """The score of one lead."""

    lead_id: str | None
    score: int = Field(ge=1, le=5, description="Most probable score, 1 (cold) to 5 (hot).")
    confidence: float = Field(description="Probability of `score`.")
    probabilities: list[float] = Field(description="Probability of each score 1..5.", min_length=5, max_length=5)
    features_used: int = Field(description="How many of the 50 inputs were present.")
    prediction_time_ms: float = Field(description="Model time for the batch this lead was scored in.")
    warnings: list[LeadWarningOut]


class ScoreResponse(BaseModel):
    """Scores in request order."""

    request_id: str
    timestamp: datetime
    total_leads: int
    processing_time_ms: float
    scores: list[LeadScore]
    model_version: str
    status: Literal["success"] = "success"


class ErrorDetail(BaseModel):
    """Where one problem is: lead index (null for request-level fields), field, and what is wrong."""

    lead_index: int | None
    field: str | None
    location: str
    message: str
    type: str


class ErrorResponse(BaseModel):
    """The envelope of every error response."""

    status: Literal["error"] = "error"
    code: str
    message: str
    request_id: str | None
    errors: list[ErrorDetail]


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


def parse_score_request(body: bytes) -> ScoreRequest:
    """Validate a raw JSON body; raise MalformedRequest (400) or ValidationFailed (422) listing every error."""
    try:
        return ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise MalformedRequest(f"body is not valid JSON: {errors[0]['msg']}") from exc
        details = tuple(field_error(dict(e)) for e in errors)
        raise ValidationFailed(f"{len(details)} invalid field(s) in the request", details) from exc


def to_columns(leads: Sequence[Any]) -> dict[str, list[Any]]:
    """Turn validated leads into columns (field name -> one value per lead), the encoder's input."""
    columns: dict[str, list[Any]] = {f.name: [getattr(lead, f.name) for lead in leads] for f in CORE_FIELDS}
    customs = [lead.custom_features for lead in leads]
    for f in CUSTOM_FIELDS:
        columns[f.name] = [None if c is None else getattr(c, f.name) for c in customs]
    columns["lead_id"] = [lead.lead_id for lead in leads]
    return columns


# --- The fast path -----------------------------------------------------------------------------------------------
# pydantic validates a 500-lead body (670 KB) in about 3.9 ms, and reading its models back into columns takes 1 ms
# more: together the largest CPU cost of a 500-lead request after the model (bench/README.md). msgspec decodes and
# checks the same body into structs, and zip() turns them into columns, in a fraction of that. The pydantic models
# above stay the contract (OpenAPI, error messages): msgspec accepts a subset of what they accept, with the same
# values (tests/api/test_fast_path.py), and whatever it refuses is handed to pydantic, which either accepts it
# (15.0 as an integer, say) or says what is wrong with it.


def _fast_type(spec: InputField) -> Any:  # noqa: ANN401 - a type expression for msgspec
    if spec.kind in (Kind.CATEGORY, Kind.TEXT):
        return Annotated[str, msgspec.Meta(max_length=spec.max_length)] | None
    if spec.kind is Kind.INT:
        lowest = None if spec.minimum is None else math.ceil(spec.minimum)
        return Annotated[int, msgspec.Meta(ge=lowest, le=MAX_INT)] | None
    if spec.kind is Kind.FLOAT:
        lower = spec.minimum if spec.minimum is not None else -MAX_ABS_FLOAT
        upper = spec.maximum if spec.maximum is not None else MAX_ABS_FLOAT
        return Annotated[float, msgspec.Meta(ge=lower, le=upper)] | None
    if spec.kind is Kind.BOOL:
        return bool | None
    return str | None  # timestamps: read column-wise below (_strict_timestamps, else the contract's own type)


_FAST_OPTIONS: Final[dict[str, Any]] = {"forbid_unknown_fields": True, "gc": False}
_FastCustom = msgspec.defstruct(
    "FastCustomFeatures", [(f.name, _fast_type(f), None) for f in CUSTOM_FIELDS], **_FAST_OPTIONS
)
_FAST_LEAD_FIELDS: Final = (*(f.name for f in CORE_FIELDS), "lead_id", "custom_features")
_FastLead = msgspec.defstruct(
    "FastLead",
    [
        *((f.name, _fast_type(f), None) for f in CORE_FIELDS),
        ("lead_id", Annotated[str, msgspec.Meta(max_length=128)] | None, None),
        ("custom_features", _FastCustom | None, None),
    ],
    **_FAST_OPTIONS,
)
_FastRequest = msgspec.defstruct(
    "FastRequest",
    [
        ("leads", Annotated[list[_FastLead], msgspec.Meta(min_length=1, max_length=MAX_LEADS)]),  # type: ignore[valid-type]
        ("request_id", str | None, None),
    ],
    **_FAST_OPTIONS,
)
_FAST_DECODER: Final = msgspec.json.Decoder(_FastRequest)
_REQUEST_ID_FULL: Final = re.compile(REQUEST_ID_PATTERN.removeprefix("^").removesuffix("$"))
_NO_CUSTOM_FEATURES: Final = (None,) * len(CUSTOM_FIELDS)
_CUSTOM_NAMES: Final = tuple(f.name for f in CUSTOM_FIELDS)
_TIMESTAMP_FIELDS: Final = tuple(f.name for f in CORE_FIELDS if f.kind is Kind.TIMESTAMP)
_TIMESTAMP_COLUMN: Final = TypeAdapter(list[Timestamp | None])


# The usual form of a timestamp (what JSON encoders write). Values in it are read with datetime.fromisoformat, which
# reads them exactly as pydantic does (tests/api/test_fast_path.py), at 0.4 us instead of 0.9 us; any other form goes
# to the contract's own timestamp type. ASCII digits only: \d would also take other scripts' digits.
_STRICT_TIMESTAMP: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


def _strict_timestamps(values: Sequence[Any]) -> list[datetime | None] | None:
    """The values as UTC datetimes when every one is in the usual form and valid; else None."""
    out: list[datetime | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, str) or _STRICT_TIMESTAMP.fullmatch(value) is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
            out.append(parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC))
        except (ValueError, OverflowError):
            return None
    return out


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A valid scoring request as the encoder takes it: the leads as columns (field name -> value per lead)."""

    request_id: str | None
    columns: Mapping[str, Sequence[Any]]
    size: int


def _fast_parse(body: bytes) -> ParsedRequest | None:
    """The request decoded by msgspec, or None when msgspec refuses it (pydantic then decides)."""
    try:
        request: Any = _FAST_DECODER.decode(body)  # a _FastRequest; defstruct types are opaque to mypy
    except msgspec.MsgspecError:
        return None
    request_id: str | None = request.request_id
    if request_id is not None and not _REQUEST_ID_FULL.fullmatch(request_id):
        return None
    leads = request.leads
    astuple = msgspec.structs.astuple
    rows = map(astuple, leads)
    columns: dict[str, Sequence[Any]] = dict(zip(_FAST_LEAD_FIELDS, zip(*rows, strict=True), strict=True))
    customs = columns.pop("custom_features")
    custom_rows = [_NO_CUSTOM_FEATURES if c is None else astuple(c) for c in customs]
    columns.update(zip(_CUSTOM_NAMES, zip(*custom_rows, strict=True), strict=True))
    for name in _TIMESTAMP_FIELDS:
        values = columns[name]
        if any(v is not None for v in values):
            strict = _strict_timestamps(values)
            if strict is not None:
                columns[name] = strict
                continue
            try:
                columns[name] = _TIMESTAMP_COLUMN.validate_python(values)
            except ValidationError:
                return None
    return ParsedRequest(request_id=request_id, columns=columns, size=len(leads))


def parse_leads(body: bytes) -> ParsedRequest:
    """Validate a raw JSON body into columns.

    Raises MalformedRequest (400) or ValidationFailed (422) listing every error, exactly as `parse_score_request`.
    """
    parsed = _fast_parse(body)
    if parsed is not None:
        return parsed
    request = parse_score_request(body)
    return ParsedRequest(request_id=request.request_id, columns=to_columns(request.leads), size=len(request.leads))
