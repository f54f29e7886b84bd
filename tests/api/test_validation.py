"""One test per validation rule of the contract: the status, and the lead index and field it reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadscore.api.schemas import EXAMPLE_LEAD

SCORE = "/api/v1/scoring/score"
GOOD = {"lead_id": "good", "industry": "Retail"}


def post_raw(client, body: str | bytes):
    """POST a body exactly as given (to send what json.dumps would not)."""
    return client.post(SCORE, content=body, headers={"content-type": "application/json"})


def errors_of(response) -> list[tuple[int | None, str | None]]:
    """(lead_index, field) of every reported error."""
    return [(e["lead_index"], e["field"]) for e in response.json()["errors"]]


def assert_rejected(response, lead_index: int | None, field: str | None, status: int = 422) -> dict[str, Any]:
    """The response is `status` in the envelope, reporting exactly one error at lead_index/field."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["code"] == "validation_error"
    assert errors_of(response) == [(lead_index, field)]
    error = body["errors"][0]
    assert error["message"]
    assert error["type"]
    return error


def with_bad_lead(bad: dict[str, Any]) -> dict[str, Any]:
    """A request whose lead 1 is `bad` and lead 0 is valid, so the reported index must be 1."""
    return {"leads": [GOOD, bad]}


# --- request level ------------------------------------------------------------------------------------------


def test_request_id_with_forbidden_characters(client):
    """request_id outside letters, digits and ._:- is a 422 on field request_id, no lead index."""
    error = assert_rejected(client.post(SCORE, json={"request_id": "batch 1/2", "leads": [GOOD]}), None, "request_id")
    assert error["location"] == "request_id"


def test_request_id_longer_than_128(client):
    """A 129-character request_id is a 422 on request_id; 128 characters pass."""
    assert client.post(SCORE, json={"request_id": "r" * 128, "leads": [GOOD]}).status_code == 200
    assert_rejected(client.post(SCORE, json={"request_id": "r" * 129, "leads": [GOOD]}), None, "request_id")


def test_request_id_empty(client):
    """An empty request_id is a 422 (send none to have one generated)."""
    assert_rejected(client.post(SCORE, json={"request_id": "", "leads": [GOOD]}), None, "request_id")


def test_leads_missing(client):
    """A body without leads is a 422 on field leads."""
    error = assert_rejected(client.post(SCORE, json={"request_id": "x"}), None, "leads")
    assert error["type"] == "missing"


def test_leads_empty(client):
    """An empty leads list is a 422 on field leads."""
    error = assert_rejected(client.post(SCORE, json={"leads": []}), None, "leads")
    assert error["type"] == "too_short"


def test_more_than_500_leads(client):
    """501 leads is a 422 on field leads."""
    error = assert_rejected(client.post(SCORE, json={"leads": [{}] * 501}), None, "leads")
    assert error["type"] == "too_long"


def test_leads_not_a_list(client):
    """An object in place of the leads list is a 422 on field leads."""
    assert_rejected(client.post(SCORE, json={"leads": {"0": GOOD}}), None, "leads")


def test_body_not_an_object(client):
    """A JSON array as the body is a 422 located at the body itself."""
    error = assert_rejected(client.post(SCORE, json=[GOOD]), None, None)
    assert error["location"] == "body"


def test_unknown_top_level_field(client):
    """A field next to leads that the contract does not define is a 422 naming it."""
    error = assert_rejected(client.post(SCORE, json={"leads": [GOOD], "lead": []}), None, "lead")
    assert error["type"] == "extra_forbidden"


# --- lead level ---------------------------------------------------------------------------------------------


def test_lead_not_an_object(client):
    """A lead that is not an object is a 422 at that lead's index."""
    assert_rejected(client.post(SCORE, json={"leads": [GOOD, 7]}), 1, None)


def test_lead_id_longer_than_128(client):
    """A 129-character lead_id is a 422 on that lead's lead_id."""
    assert_rejected(client.post(SCORE, json=with_bad_lead({"lead_id": "x" * 129})), 1, "lead_id")


def test_unknown_lead_field(client):
    """A misspelt lead field is a 422 naming it, so a typo never silently drops a feature."""
    error = assert_rejected(client.post(SCORE, json=with_bad_lead({"industy": "Retail"})), 1, "industy")
    assert error["location"] == "leads[1].industy"
    assert error["type"] == "extra_forbidden"


def test_unknown_custom_feature_key(client):
    """custom_feature_35 (or any other key) is a 422 naming the key under custom_features."""
    body = with_bad_lead({"custom_features": {"custom_feature_1": 1.0, "custom_feature_35": 2.0}})
    error = assert_rejected(client.post(SCORE, json=body), 1, "custom_features.custom_feature_35")
    assert error["location"] == "leads[1].custom_features.custom_feature_35"


def test_custom_features_not_an_object(client):
    """custom_features given as a list is a 422 on custom_features."""
    assert_rejected(client.post(SCORE, json=with_bad_lead({"custom_features": [1.0, 2.0]})), 1, "custom_features")


@pytest.mark.parametrize("value", [-0.01, 1.01], ids=["below-0", "above-1"])
def test_email_engagement_score_outside_0_to_1(client, value):
    """email_engagement_score must lie in 0..1."""
    body = with_bad_lead({"email_engagement_score": value})
    assert_rejected(client.post(SCORE, json=body), 1, "email_engagement_score")


def test_email_engagement_score_bounds_are_inclusive(client):
    """0 and 1 themselves are valid engagement scores."""
    body = {"leads": [{"email_engagement_score": 0}, {"email_engagement_score": 1.0}]}
    assert client.post(SCORE, json=body).status_code == 200


@pytest.mark.parametrize(
    "field",
    [
        "website_sessions",
        "pages_viewed",
        "form_fills",
        "content_downloads",
        "campaign_touchpoints",
        "account_employees",
    ],
)
def test_negative_count(client, field):
    """Every count field must be a non-negative integer."""
    error = assert_rejected(client.post(SCORE, json=with_bad_lead({field: -1})), 1, field)
    assert error["type"] == "greater_than_equal"


@pytest.mark.parametrize("field", ["time_on_site", "account_revenue"])
def test_negative_amount(client, field):
    """time_on_site and account_revenue must be >= 0."""
    assert_rejected(client.post(SCORE, json=with_bad_lead({field: -0.5})), 1, field)


def test_count_beyond_int64_safe_range(client):
    """A count above 10^12 is a 422 (it would not fit the lake's columns meaningfully)."""
    assert_rejected(client.post(SCORE, json=with_bad_lead({"pages_viewed": 10**13})), 1, "pages_viewed")


def test_fractional_count(client):
    """A count with a fraction (2.5 sessions) is a 422."""
    error = assert_rejected(client.post(SCORE, json=with_bad_lead({"website_sessions": 2.5})), 1, "website_sessions")
    assert error["type"] == "int_from_float"


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("time_on_site", "1e999"),
        ("account_revenue", "-1e999"),
        ("custom_features.custom_feature_3", "1e999"),
    ],
)
def test_non_finite_number(client, field, literal):
    """A number that parses to infinity (1e999) is a 422: numbers must be finite."""
    if field.startswith("custom_features."):
        lead = f'{{"custom_features": {{"{field.split(".")[1]}": {literal}}}}}'
    else:
        lead = f'{{"{field}": {literal}}}'
    response = post_raw(client, f'{{"leads": [{json.dumps(GOOD)}, {lead}]}}')
    error = assert_rejected(response, 1, field)
    assert error["type"] == "finite_number"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals(client, literal):
    """NaN/Infinity (not JSON, but sent by some encoders) are refused at the field as non-finite."""
    response = post_raw(client, f'{{"leads": [{json.dumps(GOOD)}, {{"time_on_site": {literal}}}]}}')
    error = assert_rejected(response, 1, "time_on_site")
    assert error["type"] == "finite_number"


def test_huge_custom_feature(client):
    """A custom feature beyond +-1e30 is a 422 (it would overflow float32 encoding)."""
    body = with_bad_lead({"custom_features": {"custom_feature_2": 1e31}})
    assert_rejected(client.post(SCORE, json=body), 1, "custom_features.custom_feature_2")


def test_negative_custom_feature_is_valid(client):
    """Custom features are any finite numbers, negatives included."""
    assert client.post(SCORE, json={"leads": [{"custom_features": {"custom_feature_2": -3.5}}]}).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("website_sessions", "15", "int_type"),
        ("website_sessions", True, "int_type"),
        ("time_on_site", "32.5", "float_type"),
        ("email_engagement_score", False, "float_type"),
        ("existing_customer", "yes", "bool_type"),
        ("existing_customer", 1, "bool_type"),
        ("industry", 5, "string_type"),
        ("job_title", ["VP", "Marketing"], "string_type"),
    ],
    ids=["string-for-int", "bool-for-int", "string-for-float", "bool-for-float", "yes-for-bool", "1-for-bool",
         "number-for-string", "list-for-string"],
)  # fmt: skip
def test_wrong_type(client, field, value, error_type):
    """A value of the wrong JSON type is a 422, never coerced ("15" is not a number, "yes" not a bool)."""
    error = assert_rejected(client.post(SCORE, json=with_bad_lead({field: value})), 1, field)
    assert error["type"] == error_type


def test_custom_feature_wrong_type(client):
    """A custom feature given as a string is a 422 on that key."""
    body = with_bad_lead({"custom_features": {"custom_feature_9": "0.4"}})
    assert_rejected(client.post(SCORE, json=body), 1, "custom_features.custom_feature_9")


@pytest.mark.parametrize(
    "value", ["20-08-2024", "yesterday", "2024-13-01T00:00:00Z", "2024-08-20T25:00:00", 1724149800, True]
)
def test_bad_timestamp(client, value):
    """A last_campaign_interaction that is not an ISO 8601 timestamp is a 422."""
    assert_rejected(client.post(SCORE, json=with_bad_lead({"last_campaign_interaction": value})), 1,
                    "last_campaign_interaction")  # fmt: skip


@pytest.mark.parametrize("field", ["industry", "job_title", "company_size", "seniority_level", "geography"])
def test_string_too_long(client, field):
    """Text fields are capped at 200 characters."""
    assert client.post(SCORE, json={"leads": [{field: "x" * 200}]}).status_code == 200
    error = assert_rejected(client.post(SCORE, json=with_bad_lead({field: "x" * 201})), 1, field)
    assert error["type"] == "string_too_long"


def test_every_error_is_reported(client):
    """Several bad leads and fields are all reported in one response, each with its index and field."""
    leads = [
        {**EXAMPLE_LEAD, "lead_id": "fine"},
        {"email_engagement_score": 3, "website_sessions": -2, "custom_features": {"custom_feature_99": 1}},
        GOOD,
        {"existing_customer": "yes", "industy": "Retail"},
        {"lead_id": "x" * 129},
    ]
    response = client.post(SCORE, json={"request_id": "bad id", "leads": leads, "extra": 1})
    assert response.status_code == 422
    assert sorted(errors_of(response), key=str) == sorted(
        [
            (None, "request_id"),
            (None, "extra"),
            (1, "email_engagement_score"),
            (1, "website_sessions"),
            (1, "custom_features.custom_feature_99"),
            (3, "existing_customer"),
            (3, "industy"),
            (4, "lead_id"),
        ],
        key=str,
    )
    assert response.json()["message"].startswith("8 invalid")
