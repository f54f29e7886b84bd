"""The request schema on its own: timestamp normalisation, error locations, columns for the encoder."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from leadscore.api.decode import parse_leads
from leadscore.api.schemas import EXAMPLE_REQUEST, field_error, parse_score_request, to_columns
from leadscore.errors import MalformedRequest, ValidationFailed
from leadscore.features.spec import INPUT_FIELDS


def parse(body: dict) -> object:
    """Parse a request body given as a dict."""
    return parse_score_request(json.dumps(body).encode())


@pytest.mark.parametrize(
    "stamp",
    ["2024-08-20T10:30:00", "2024-08-20T10:30:00Z", "2024-08-20T12:30:00+02:00", "2024-08-20 05:30:00-05:00"],
)
def test_timestamps_become_utc(stamp):
    """Every timestamp is converted to UTC; one without offset is read as UTC."""
    lead = parse({"leads": [{"last_campaign_interaction": stamp}]}).leads[0]
    assert lead.last_campaign_interaction == datetime(2024, 8, 20, 10, 30, tzinfo=UTC)
    assert lead.last_campaign_interaction.utcoffset().total_seconds() == 0


def test_example_request_is_valid():
    """The documented example passes validation."""
    assert parse(EXAMPLE_REQUEST).request_id == "batch-scoring-001"


def test_malformed_json_raises_malformed_request():
    """Unparseable bytes raise MalformedRequest (400), not a validation error."""
    with pytest.raises(MalformedRequest):
        parse_score_request(b"{nope")


def test_validation_error_lists_every_field():
    """A body with several problems raises one ValidationFailed carrying all of them."""
    with pytest.raises(ValidationFailed) as caught:
        parse({"leads": [{"form_fills": -1}, {"geography": 1}]})
    assert [(e.lead_index, e.field) for e in caught.value.errors] == [(0, "form_fills"), (1, "geography")]


def test_field_error_locations():
    """Pydantic locations become lead index, dotted field and a readable location."""
    nested = field_error({"loc": ("leads", 2, "custom_features", "custom_feature_4"), "msg": "bad", "type": "t"})
    assert (nested.lead_index, nested.field, nested.location) == (
        2,
        "custom_features.custom_feature_4",
        "leads[2].custom_features.custom_feature_4",
    )
    top = field_error({"loc": ("request_id",), "msg": "bad", "type": "t"})
    assert (top.lead_index, top.field, top.location) == (None, "request_id", "request_id")
    body = field_error({"loc": (), "msg": "bad", "type": "t"})
    assert (body.lead_index, body.field, body.location) == (None, None, "body")


def test_to_columns_flattens_custom_features():
    """Validated leads become one column per input (custom features flattened) plus lead_id."""
    request = parse({"leads": [{"lead_id": "a", "custom_features": {"custom_feature_2": 0.5}}, {"industry": "Retail"}]})
    columns = to_columns(request.leads)
    assert set(columns) == {f.name for f in INPUT_FIELDS} | {"lead_id"}
    assert columns["lead_id"] == ["a", None]
    assert columns["custom_feature_2"] == [0.5, None]
    assert columns["industry"] == [None, "Retail"]


def test_a_date_alone_is_read_as_its_midnight_utc() -> None:
    """A timestamp sent as a date alone is that day's midnight UTC, on the fast decoder as in the contract."""
    body = json.dumps({"leads": [{"last_campaign_interaction": "2025-01-02"}]}).encode()
    assert parse_score_request(body).leads[0].last_campaign_interaction == datetime(2025, 1, 2, tzinfo=UTC)
    assert parse_leads(body).columns["last_campaign_interaction"] == [datetime(2025, 1, 2, tzinfo=UTC)]


def test_a_date_with_a_zone_but_no_time_is_refused() -> None:
    """`2025-01-02Z` is no ISO 8601 form the contract takes: a 422 naming the field."""
    body = json.dumps({"leads": [{"last_campaign_interaction": "2025-01-02Z"}]}).encode()
    with pytest.raises(ValidationFailed) as failure:
        parse_score_request(body)
    assert "last_campaign_interaction" in str(failure.value.errors)
