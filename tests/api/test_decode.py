"""The msgspec fast path of `parse_leads` gives the pydantic contract's answers, value for value and error for error.

The reference is the contract itself: `parse_score_request` (pydantic) followed by `to_columns`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.api.decode import _fast_parse, parse_leads
from leadscore.api.schemas import (
    EXAMPLE_REQUEST,
    MAX_INT,
    parse_score_request,
    to_columns,
)
from leadscore.errors import LeadscoreError
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, INPUT_FIELDS, InputField, Kind
from leadscore.loadtest.data import synthetic_leads
from tests.support.strategies import invalid_value, valid_lead, valid_value

EQUALITY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def typed(columns: dict[str, Any]) -> dict[str, list[tuple[type, Any]]]:
    """Columns with each value's type, so that 15 (int) and 15.0 (float) differ."""
    return {name: [(type(v), v) for v in values] for name, values in columns.items()}


def outcome(parse: Any, body: bytes) -> tuple[Any, ...]:
    """What a parser makes of `body`: the request id and typed columns, or the error it raises."""
    try:
        request_id, columns = parse(body)
    except LeadscoreError as exc:
        return ("error", type(exc), exc.message, exc.errors)
    return ("ok", request_id, typed(columns))


def contract(body: bytes) -> tuple[tuple[str | None, bool | None], dict[str, Any]]:
    """The reference: the pydantic models, then their columns (with the request id, the request's `explain`)."""
    request = parse_score_request(body)
    return (request.request_id, request.explain), to_columns(request.leads)


def served(body: bytes) -> tuple[tuple[str | None, bool | None], dict[str, Any]]:
    """What the scoring route uses."""
    request = parse_leads(body)
    return (request.request_id, request.explain), dict(request.columns)


def odd_value(spec: InputField) -> st.SearchStrategy[Any]:
    """Values near the contract's edges, accepted or not: the cases where two validators could disagree."""
    edges: list[Any] = [None, True, False, 0, -0.0, 15.0, "15", [], {}, 2**64, -(2**63) - 1, MAX_INT, MAX_INT + 1]
    if spec.kind in (Kind.CATEGORY, Kind.TEXT):
        limit = spec.max_length or 200
        edges += ["\U0001f600" * limit, "\U0001f600" * (limit + 1), "a\u0000b", "é" * limit, " "]
    if spec.kind is Kind.TIMESTAMP:
        edges += [
            "2024-08-20T10:30:00Z\n",
            "2024-08-20 10:30",
            "2024-08-20t10:30:00z",
            "2024-08-20T10:30:00.123456789Z",
            "2024-08-20T10:30:00.1234565+05:30",
            "2024-08-20T10:30:00+0530",
            "2024-08-20T10:30:60Z",
            "2024-08-20T24:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "2024-08-20",
            "20240820T103000Z",
            "2024-08-20T10:30:00",
            "2024-08-20T10:30:00.5Z",
            "2024-08-20T23:59:59.999999-23:59",
            "2024-08-20T10:30:00+24:00",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
            "2024-02-29T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "\u0662\u0660\u0662\u0664-08-20T10:30:00Z",
        ]
    return st.sampled_from(edges) | valid_value(spec) | invalid_value(spec)


@st.composite
def lead_with_odd_values(draw: st.DrawFn) -> dict[str, Any]:
    """A valid lead with up to 3 fields set to edge values."""
    lead = draw(valid_lead())
    for spec in draw(st.lists(st.sampled_from(INPUT_FIELDS), max_size=3, unique=True)):
        value = draw(odd_value(spec))
        if spec.custom:
            lead["custom_features"] = {**(lead.get("custom_features") or {}), spec.name: value}
        else:
            lead[spec.name] = value
    return lead


def test_example_and_synthetic_bodies_take_the_fast_path():
    """The bodies the service sees every day are decoded by msgspec, not handed to pydantic."""
    for leads in (EXAMPLE_REQUEST["leads"], synthetic_leads(500, seed=3, prefix="lead")):
        body = orjson.dumps({"request_id": "fast-1", "leads": leads})
        parsed = _fast_parse(body)
        assert parsed is not None
        assert parsed.size == len(leads)
        assert outcome(served, body) == outcome(contract, body)


def test_integer_written_as_float_goes_through_the_contract():
    """The fast path refuses 15.0 for an integer field; the contract accepts it, so the answer is the contract's."""
    body = json.dumps({"leads": [{"website_sessions": 15.0}]}).encode()
    assert _fast_parse(body) is None
    assert parse_leads(body).columns["website_sessions"] == [15]


def test_request_id_with_trailing_newline_is_refused():
    """A request id ending in a newline is a 422, as the contract's pattern says (Python's `$` would allow it)."""
    body = json.dumps({"request_id": "abc\n", "leads": [{}]}).encode()
    assert outcome(contract, body)[0] == "error"
    assert outcome(served, body) == outcome(contract, body)


def test_duplicate_keys_read_as_the_contract_reads_them():
    """A JSON object repeating a field gives the value the contract keeps."""
    body = b'{"leads": [{"industry": "Retail", "industry": "Technology", "form_fills": 1, "form_fills": 2}]}'
    assert outcome(served, body) == outcome(contract, body)


@pytest.mark.parametrize(
    "body",
    [b"", b"{nope", b"[]", b'{"leads": []}', b'{"leads": {}}', b'{"leads": [1]}', b'{"leads": [{}], "x": 1}'],
)
def test_malformed_bodies_get_the_contract_error(body):
    """Bodies that are not a scoring request get exactly the contract's 400 or 422."""
    assert outcome(served, body) == outcome(contract, body)


def test_more_than_500_leads_gets_the_contract_error():
    """501 leads are refused with the contract's error."""
    body = json.dumps({"leads": [{}] * 501}).encode()
    assert outcome(served, body) == outcome(contract, body)


@EQUALITY_SETTINGS
@given(st.lists(valid_lead(), min_size=1, max_size=6))
def test_valid_leads_take_the_fast_path_with_the_contract_values(leads):
    """Every lead the contract accepts is decoded by msgspec into the same values, of the same types."""
    body = json.dumps({"leads": leads}).encode()
    assert _fast_parse(body) is not None
    assert outcome(served, body) == outcome(contract, body)


@EQUALITY_SETTINGS
@given(st.lists(lead_with_odd_values(), min_size=1, max_size=4))
def test_edge_values_get_the_contract_answer(leads):
    """Whatever the values, the service answers as the contract does: the same columns or the same errors."""
    body = json.dumps({"leads": leads}).encode()
    assert outcome(served, body) == outcome(contract, body)


def test_every_input_field_is_decoded():
    """The fast path yields a column for every core and custom input, and for lead_id."""
    body = orjson.dumps(EXAMPLE_REQUEST)
    parsed = _fast_parse(body)
    assert parsed is not None
    assert set(parsed.columns) == {f.name for f in (*CORE_FIELDS, *CUSTOM_FIELDS)} | {"lead_id"}


def test_usual_timestamps_are_read_without_pydantic():
    """Timestamps in the usual ISO form are read directly, as UTC; any other form is left to the contract."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from leadscore.api.decode import _strict_timestamps  # noqa: PLC0415

    assert _strict_timestamps(["2024-08-20T10:30:00Z", None, "2024-08-20T12:30:00.25+02:00"]) == [
        datetime(2024, 8, 20, 10, 30, tzinfo=UTC),
        None,
        datetime(2024, 8, 20, 10, 30, 0, 250000, tzinfo=UTC),
    ]
    assert _strict_timestamps(["2024-08-20T10:30:00Z", "2024-08-20 10:30"]) is None


@pytest.mark.parametrize("explain", [True, False, None, "true", 1, 0, 1.0, [], {}])
def test_explain_is_read_as_the_contract_reads_it(explain):
    """`explain` true, false or null takes the fast path with the contract's value; anything else its error."""
    body = orjson.dumps({"leads": [EXAMPLE_REQUEST["leads"][0]], "explain": explain})
    assert outcome(served, body) == outcome(contract, body)
    assert (_fast_parse(body) is not None) == (explain is None or isinstance(explain, bool))


def test_two_timestamps_in_one_value_are_refused_as_the_contract_refuses_them():
    """A value holding two usual timestamps joined by a newline is not read as one: the contract's 422."""
    value = "2024-08-20T10:30:00Z\n2024-08-20T10:30:00Z"
    body = orjson.dumps({"leads": [{"last_campaign_interaction": value}, {"last_campaign_interaction": None}]})
    assert outcome(served, body)[0] == "error"
    assert outcome(served, body) == outcome(contract, body)
