"""Hypothesis strategies for leads, drawn from the feature spec: values the contract accepts and values it refuses."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from leadscore.api.schemas import MAX_ABS_FLOAT, MAX_INT, parse_score_request
from leadscore.errors import ValidationFailed
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, InputField, Kind


# --- valid values, drawn from the spec ----------------------------------------------------------------------
def _spellings(value: str) -> st.SearchStrategy[str]:
    return st.sampled_from([value, value.upper(), value.lower(), f"  {value}\t"])


def valid_value(spec: InputField) -> st.SearchStrategy[Any]:
    """Any value the contract accepts for `spec` (JSON-ready)."""
    if spec.kind is Kind.CATEGORY:
        known = st.sampled_from(spec.vocabulary).flatmap(_spellings)
        return known | st.text(max_size=spec.max_length or 200)
    if spec.kind is Kind.TEXT:
        return st.text(max_size=spec.max_length or 200)
    if spec.kind is Kind.INT:
        return st.integers(min_value=int(spec.minimum or 0), max_value=MAX_INT)
    if spec.kind is Kind.FLOAT:
        lower = spec.minimum if spec.minimum is not None else -MAX_ABS_FLOAT
        upper = spec.maximum if spec.maximum is not None else MAX_ABS_FLOAT
        return st.floats(min_value=lower, max_value=upper, allow_nan=False, allow_infinity=False)
    if spec.kind is Kind.BOOL:
        return st.booleans()
    offsets = st.none() | st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    # A day away from the ends of the calendar, so any offset converts to UTC (the edges are 422: see below).
    # hypothesis takes naive bounds and attaches the drawn zone (or none: naive means UTC in the contract).
    earliest, latest = datetime(1, 1, 2), datetime(9999, 12, 30)  # noqa: DTZ001
    moments = st.datetimes(earliest, latest, timezones=offsets)
    return moments.map(datetime.isoformat)


@st.composite
def valid_lead(draw: st.DrawFn) -> dict[str, Any]:
    """A lead with any subset of its fields present (absent, null or a valid value)."""
    lead: dict[str, Any] = {}
    for spec in CORE_FIELDS:
        choice = draw(st.sampled_from(["absent", "null", "value", "value"]))
        if choice == "null":
            lead[spec.name] = None
        elif choice == "value":
            lead[spec.name] = draw(valid_value(spec))
    if draw(st.booleans()):
        customs = draw(st.lists(st.sampled_from(CUSTOM_FIELDS), unique=True))
        lead["custom_features"] = {f.name: draw(st.none() | valid_value(f)) for f in customs}
    return lead


# --- invalid values ---------------------------------------------------------------------------------------------
_NOT_TEXT = st.integers() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.just([]) | st.just({})
_NOT_NUMBER = st.text() | st.booleans() | st.just([]) | st.just({"value": 1})


def _not_iso_text(value: str) -> bool:
    try:
        parse_score_request(json.dumps({"leads": [{"last_campaign_interaction": value}]}).encode())
    except ValidationFailed:
        return True
    return False


def invalid_value(spec: InputField) -> st.SearchStrategy[Any]:
    """Values the contract must refuse for `spec`."""
    if spec.kind in (Kind.CATEGORY, Kind.TEXT):
        limit = spec.max_length or 200
        return _NOT_TEXT | st.text(min_size=limit + 1, max_size=limit + 50)
    if spec.kind is Kind.INT:
        below = st.integers(max_value=int(spec.minimum or 0) - 1)
        fractional = st.floats(min_value=-1e6, max_value=1e6).filter(lambda x: not x.is_integer())
        return below | st.integers(min_value=MAX_INT + 1) | fractional | _NOT_NUMBER
    if spec.kind is Kind.FLOAT:
        lower = spec.minimum if spec.minimum is not None else -MAX_ABS_FLOAT
        upper = spec.maximum if spec.maximum is not None else MAX_ABS_FLOAT
        outside = st.floats(max_value=lower, exclude_max=True, allow_infinity=False, allow_nan=False) | st.floats(
            min_value=upper, exclude_min=True, allow_infinity=False, allow_nan=False
        )
        return outside | _NOT_NUMBER
    if spec.kind is Kind.BOOL:
        return st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False) | st.just([])
    unix_times = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.booleans()
    impossible_dates = st.sampled_from(
        ["2024-13-01T00:00:00Z", "2024-02-30T10:00:00Z", "2024-01-01T25:00:00Z", "0001-01-01T00:00:00+01:00"]
    )
    return unix_times | impossible_dates | st.text(max_size=40).filter(_not_iso_text)
