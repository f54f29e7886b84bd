"""The scoring body's fast decoder (msgspec), equal in its answers to the pydantic contract in `schemas`.

pydantic validates a 500-lead body (670 KB) in about 4 ms, and reading its models back into columns takes 1 ms
more: together the largest CPU cost of a 500-lead request after the model (bench/README.md). msgspec decodes and
checks the same body into structs, and zip() turns them into columns, in a fraction of that. The pydantic models
stay the contract (OpenAPI, error messages): msgspec accepts a subset of what they accept, with the same
values (tests/api/test_decode.py), and whatever it refuses is handed to pydantic, which either accepts it
(15.0 as an integer, say) or says what is wrong with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from pydantic import TypeAdapter, ValidationError

from leadscore.api.middleware import is_request_id
from leadscore.api.schemas import MAX_ABS_FLOAT, MAX_INT, MAX_LEADS, Timestamp, parse_score_request, to_columns
from leadscore.features.encode import LeadArrays
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, InputField, Kind


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
        ("explain", bool | None, None),
    ],
    **_FAST_OPTIONS,
)
_FAST_DECODER: Final = msgspec.json.Decoder(_FastRequest)
_NO_CUSTOM_FEATURES: Final = (None,) * len(CUSTOM_FIELDS)
_CUSTOM_NAMES: Final = tuple(f.name for f in CUSTOM_FIELDS)
_TIMESTAMP_FIELDS: Final = tuple(f.name for f in CORE_FIELDS if f.kind is Kind.TIMESTAMP)
_TIMESTAMP_COLUMN: Final = TypeAdapter(list[Timestamp | None])


# The usual form of a timestamp (what JSON encoders write). Values in it are read with datetime.fromisoformat, which
# reads them exactly as pydantic does (tests/api/test_decode.py), at 0.4 us instead of 0.9 us; any other form goes
# to the contract's own timestamp type. ASCII digits only: \d would also take other scripts' digits.
_STRICT_TIMESTAMP: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


# Every value of a column at once: one regex call over the values joined by newlines (which no value in the usual
# form contains), instead of one call per value.
_STRICT_TIMESTAMPS: Final = re.compile(f"(?:{_STRICT_TIMESTAMP.pattern})(?:\n(?:{_STRICT_TIMESTAMP.pattern}))*")


def _strict_timestamps(values: Sequence[Any]) -> list[datetime | None] | None:
    """The values as UTC datetimes when every one is in the usual form and valid; else None."""
    present = [v for v in values if v is not None]
    if not all(isinstance(v, str) for v in present):
        return None
    if present and _STRICT_TIMESTAMPS.fullmatch("\n".join(present)) is None:
        return None
    try:
        # A value holding a newline passes the joined match only as two values; fromisoformat refuses it.
        parsed = [None if v is None else datetime.fromisoformat(v) for v in values]
        return [
            p if p is None or p.tzinfo is UTC else p.replace(tzinfo=UTC) if p.tzinfo is None else p.astimezone(UTC)
            for p in parsed
        ]
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A valid scoring request: the leads as columns (field name -> value per lead), validated and typed.

    The scoring turns them into the encoder's arrays (`LeadArrays.of`, or `LeadArrays.joined` for a micro-batch of
    small requests); they are also the values as sent, for the lake's raw inputs and the reasons.
    """

    request_id: str | None
    columns: Mapping[str, Sequence[Any]]
    size: int
    explain: bool | None = None

    def lead_arrays(self) -> LeadArrays:
        """The leads as the encoder's arrays."""
        return LeadArrays.of(self.columns, self.size)


def _fast_parse(body: bytes) -> ParsedRequest | None:
    """The request decoded by msgspec, or None when msgspec refuses it (pydantic then decides)."""
    try:
        request: Any = _FAST_DECODER.decode(body)  # a _FastRequest; defstruct types are opaque to mypy
    except msgspec.MsgspecError:
        return None
    request_id: str | None = request.request_id
    if request_id is not None and not is_request_id(request_id):
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
    return ParsedRequest(request_id=request_id, columns=columns, size=len(leads), explain=request.explain)


def parse_leads(body: bytes) -> ParsedRequest:
    """Validate a raw JSON body into columns.

    Raises MalformedRequest (400) or ValidationFailed (422) listing every error, exactly as `parse_score_request`.
    """
    parsed = _fast_parse(body)
    if parsed is not None:
        return parsed
    request = parse_score_request(body)
    return ParsedRequest(
        request_id=request.request_id,
        columns=to_columns(request.leads),
        size=len(request.leads),
        explain=request.explain,
    )
