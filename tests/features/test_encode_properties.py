"""Properties of validation + encoding over leads generated from the feature spec (hypothesis).

What holds for every lead the contract accepts, as a JSON body goes through parse_leads and encode:
- the matrix is float32 of shape (n, N_MODEL_INPUTS);
- every entry is finite or NaN (never +-inf);
- an entry is NaN exactly when the raw inputs it derives from are missing (null or absent), a category is
  outside its vocabulary, or a ratio's denominator (employees, sessions) is 0;
- recency (days since the last interaction) is never negative;
- features_used counts the non-null raw inputs.
And every value the contract refuses gets a 422 whose errors name the lead and the field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.api.decode import parse_leads
from leadscore.errors import ValidationFailed
from leadscore.features.encode import encode
from leadscore.features.picklists import picklist_key
from leadscore.features.spec import (
    CUSTOM_FIELDS,
    ENGINEERED_NAMES,
    INPUT_FIELDS,
    N_MODEL_INPUTS,
)
from tests.support.strategies import invalid_value, valid_lead

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Model columns that are a raw field passed through: NaN exactly when the field is missing.
PASS_THROUGH = {
    "email_engagement_score": "email_engagement_score",
    "website_sessions": "website_sessions",
    "pages_viewed": "pages_viewed",
    "time_on_site": "time_on_site",
    "form_fills": "form_fills",
    "content_downloads": "content_downloads",
    "campaign_touchpoints": "campaign_touchpoints",
    "days_since_last_interaction": "last_campaign_interaction",
    "log_account_revenue": "account_revenue",
    "log_account_employees": "account_employees",
    "existing_customer": "existing_customer",
    "job_function_code": "job_title",
    "job_level_ordinal": "job_title",
    **{f.name: f.name for f in CUSTOM_FIELDS},
}
CATEGORY_COLUMNS = {
    "company_size_ordinal": "company_size",
    "industry_code": "industry",
    "seniority_ordinal": "seniority_level",
    "geography_code": "geography",
}
# Ratio columns: (numerator field, denominator field); NaN when either is missing or the denominator is 0.
RATIOS = {
    "revenue_per_employee": ("account_revenue", "account_employees"),
    "pages_per_session": ("pages_viewed", "website_sessions"),
    "minutes_per_session": ("time_on_site", "website_sessions"),
}
SPEC_BY_NAME = {f.name: f for f in INPUT_FIELDS}


def raw(lead: dict[str, Any], name: str) -> Any:
    """The raw value of input `name` in a request lead (None when absent or null)."""
    if SPEC_BY_NAME[name].custom:
        return (lead.get("custom_features") or {}).get(name)
    return lead.get(name)


def expected_nan(lead: dict[str, Any]) -> np.ndarray:
    """Which model inputs must be NaN for this lead (see the module docstring)."""
    mask = np.zeros(N_MODEL_INPUTS, dtype=bool)
    for i, column in enumerate(ENGINEERED_NAMES):
        if column in PASS_THROUGH:
            mask[i] = raw(lead, PASS_THROUGH[column]) is None
        elif column in CATEGORY_COLUMNS:
            spec = SPEC_BY_NAME[CATEGORY_COLUMNS[column]]
            value = raw(lead, spec.name)
            mask[i] = value is None or picklist_key(value) not in {picklist_key(v) for v in spec.vocabulary}
        elif column in RATIOS:
            numerator, denominator = (raw(lead, name) for name in RATIOS[column])
            mask[i] = numerator is None or denominator is None or denominator == 0
        elif column == "conversion_actions":
            mask[i] = raw(lead, "form_fills") is None or raw(lead, "content_downloads") is None
        else:
            pytest.fail(f"model input {column} has no stated NaN rule in this test")
    return mask


def encode_body(leads: list[dict[str, Any]]) -> Any:
    """A request body as it arrives: JSON bytes -> validated leads -> columns -> encoded matrix."""
    request = parse_leads(json.dumps({"leads": leads}).encode())
    return encode(request.columns, request.size, NOW)


@PROPERTY_SETTINGS
@given(st.lists(valid_lead(), min_size=1, max_size=8))
def test_valid_leads_encode_to_right_shape_float32(leads):
    """Any accepted batch of n leads becomes a float32 matrix of shape (n, N_MODEL_INPUTS)."""
    encoded = encode_body(leads)
    assert encoded.matrix.shape == (len(leads), N_MODEL_INPUTS)
    assert encoded.matrix.dtype == np.float32


@PROPERTY_SETTINGS
@given(st.lists(valid_lead(), min_size=1, max_size=8))
def test_valid_leads_encode_to_finite_or_nan(leads):
    """No accepted value, however extreme, encodes to +-inf."""
    assert not np.isinf(encode_body(leads).matrix).any()


@PROPERTY_SETTINGS
@given(st.lists(valid_lead(), min_size=1, max_size=8))
def test_nan_exactly_where_inputs_are_missing_or_unknown(leads):
    """An entry is NaN exactly when its inputs are missing, unknown, or a ratio's denominator is 0."""
    encoded = encode_body(leads)
    expected = np.stack([expected_nan(lead) for lead in leads])
    mismatched = [
        (row, ENGINEERED_NAMES[col]) for row, col in zip(*np.nonzero(np.isnan(encoded.matrix) != expected), strict=True)
    ]
    assert mismatched == []


@PROPERTY_SETTINGS
@given(st.lists(valid_lead(), min_size=1, max_size=8))
def test_recency_is_never_negative(leads):
    """Days since the last interaction are >= 0 wherever present, even for interactions after scoring time."""
    days = encode_body(leads).matrix[:, ENGINEERED_NAMES.index("days_since_last_interaction")]
    assert (days[~np.isnan(days)] >= 0).all()


@PROPERTY_SETTINGS
@given(st.lists(valid_lead(), min_size=1, max_size=8))
def test_features_used_counts_present_inputs(leads):
    """features_used is the number of non-null raw inputs of each lead."""
    expected = [sum(raw(lead, f.name) is not None for f in INPUT_FIELDS) for lead in leads]
    assert encode_body(leads).features_used.tolist() == expected


# --- invalid values -------------------------------------------------------------------------------------------
@st.composite
def batch_with_one_invalid_value(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, str]:
    """A batch of valid leads where one lead carries one refused value; returns (leads, index, field path)."""
    leads = draw(st.lists(valid_lead(), min_size=1, max_size=5))
    index = draw(st.integers(0, len(leads) - 1))
    spec = draw(st.sampled_from(INPUT_FIELDS))
    value = draw(invalid_value(spec))
    lead = leads[index]
    if spec.custom:
        lead["custom_features"] = {**(lead.get("custom_features") or {}), spec.name: value}
        return leads, index, f"custom_features.{spec.name}"
    lead[spec.name] = value
    return leads, index, spec.name


@PROPERTY_SETTINGS
@given(batch_with_one_invalid_value())
def test_invalid_value_gets_422_naming_lead_and_field(case):
    """Any refused value gets a 422 whose errors name the lead index and the field."""
    leads, index, field = case
    with pytest.raises(ValidationFailed) as failure:
        encode_body(leads)
    assert failure.value.status_code == 422
    assert (index, field) in {(e.lead_index, e.field) for e in failure.value.errors}


@PROPERTY_SETTINGS
@given(
    st.lists(valid_lead(), min_size=1, max_size=5),
    st.text(min_size=1, max_size=30).filter(lambda name: name not in SPEC_BY_NAME and name != "lead_id"),
    st.integers(),
)
def test_unknown_field_gets_422_naming_it(leads, name, value):
    """A field outside the contract gets a 422 naming it (typos are not silently ignored)."""
    leads[-1][name] = value
    with pytest.raises(ValidationFailed) as failure:
        encode_body(leads)
    assert (len(leads) - 1, name) in {(e.lead_index, e.field) for e in failure.value.errors}
