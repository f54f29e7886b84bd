"""The scoring endpoint through the app: response shape, order, ids, warnings, timestamps."""

from __future__ import annotations

import copy
import re

import pytest

from leadscore.api.schemas import EXAMPLE_LEAD, EXAMPLE_REQUEST, ScoreResponse
from tests.support.leads import check_score_response, synthetic_leads

SCORE = "/api/v1/scoring/score"
EXPLAIN_FIELDS = ("reasons", "drivers")


def test_example_request_gets_every_response_field(client):
    """The documented example scores with every response field present and consistent."""
    response = client.post(SCORE, json=EXAMPLE_REQUEST)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    check_score_response(body, EXAMPLE_REQUEST, model_version="test-tiny")
    assert body["scores"][0]["features_used"] == 50


def test_response_is_exactly_what_its_model_describes(client):
    """The hand-built success body has the ScoreResponse model's fields, in its order, with its values."""
    leads = [{**EXAMPLE_LEAD, "industry": "Basket Weaving", "lead_id": "a"}, {}]
    body = client.post(SCORE, json={"request_id": "shape-1", "leads": leads}).json()
    assert body["scores"][0]["warnings"]
    dumped = ScoreResponse.model_validate(body).model_dump(mode="json", exclude_unset=True)
    assert body == dumped | {"timestamp": body["timestamp"]}
    assert list(body) == list(ScoreResponse.model_fields)
    fields = list(ScoreResponse.model_fields["scores"].annotation.__args__[0].model_fields)
    for score in body["scores"]:
        assert list(score) == [f for f in fields if f not in EXPLAIN_FIELDS]  # sent only when asked for


def test_scores_come_back_in_request_order_with_lead_ids(client):
    """Each result sits at its lead's position, echoes its lead_id, and equals scoring that lead alone."""
    leads = synthetic_leads(6, seed=9)
    batch = client.post(SCORE, json={"leads": leads}).json()["scores"]
    assert [s["lead_id"] for s in batch] == [lead["lead_id"] for lead in leads]
    for lead, result in zip(leads, batch, strict=True):
        alone = client.post(SCORE, json={"leads": [lead]}).json()["scores"][0]
        assert alone["probabilities"] == result["probabilities"]


def test_lead_without_id_gets_null_lead_id(client):
    """A lead sent without lead_id is answered with lead_id null."""
    response = client.post(SCORE, json={"leads": [{"industry": "Retail"}]})
    assert response.json()["scores"][0]["lead_id"] is None


def test_request_id_is_echoed_in_body_and_header(client):
    """A caller's request_id comes back in the body and as X-Request-ID."""
    response = client.post(SCORE, json={"request_id": "crm-sync:2024.08_20-1", "leads": [{}]})
    assert response.json()["request_id"] == "crm-sync:2024.08_20-1"
    assert response.headers["x-request-id"] == "crm-sync:2024.08_20-1"


def test_request_id_is_generated_when_absent(client):
    """Without a request_id, a fresh one is generated, returned in body and header, and differs per request."""
    first = client.post(SCORE, json={"leads": [{}]})
    second = client.post(SCORE, json={"leads": [{}]})
    assert re.fullmatch(r"[0-9a-f]{32}", first.json()["request_id"])
    assert first.headers["x-request-id"] == first.json()["request_id"]
    assert first.json()["request_id"] != second.json()["request_id"]


def test_x_request_id_header_is_adopted_when_body_has_none(client):
    """A valid X-Request-ID header becomes the request id when the body names none."""
    response = client.post(SCORE, json={"leads": [{}]}, headers={"X-Request-ID": "trace-42"})
    assert response.json()["request_id"] == "trace-42"
    assert response.headers["x-request-id"] == "trace-42"


def test_invalid_x_request_id_header_is_replaced(client):
    """An X-Request-ID header that breaks the id pattern is not echoed; a fresh id is used."""
    response = client.post(SCORE, json={"leads": [{}]}, headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_body_request_id_wins_over_header(client):
    """When body and header both carry an id, the body's is the one reported."""
    response = client.post(SCORE, json={"request_id": "from-body", "leads": [{}]}, headers={"X-Request-ID": "hdr"})
    assert response.json()["request_id"] == "from-body"
    assert response.headers["x-request-id"] == "from-body"


def test_older_path_answers_the_same(client):
    """POST /api/v1/score is the same handler as /api/v1/scoring/score."""
    new = client.post(SCORE, json=EXAMPLE_REQUEST).json()
    old = client.post("/api/v1/score", json=EXAMPLE_REQUEST)
    assert old.status_code == 200
    check_score_response(old.json(), EXAMPLE_REQUEST, model_version="test-tiny")
    assert old.json()["scores"][0]["probabilities"] == new["scores"][0]["probabilities"]


def test_json_content_type_with_charset_is_accepted(client):
    """application/json; charset=utf-8 is JSON."""
    response = client.post(
        SCORE, content=b'{"leads": [{}]}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200


def test_unknown_category_is_scored_with_a_warning(client):
    """An unknown category value still scores (200) and the lead carries a warning naming field and value."""
    leads = [
        {"lead_id": "ok", "industry": "Retail"},
        {"lead_id": "odd", "industry": "Space Mining", "geography": "Mars"},
    ]
    response = client.post(SCORE, json={"leads": leads})
    assert response.status_code == 200
    ok, odd = response.json()["scores"]
    assert ok["warnings"] == []
    assert [(w["field"], w["value"]) for w in odd["warnings"]] == [("industry", "Space Mining"), ("geography", "Mars")]
    assert all(w["message"] for w in odd["warnings"])


def test_categories_match_case_and_whitespace_insensitively(client):
    """A category in odd case and spacing scores exactly like its canonical spelling, without warnings."""
    canonical = {"company_size": "Enterprise", "seniority_level": "Mid-Level", "geography": "North America"}
    sloppy = {"company_size": " ENTERPRISE ", "seniority_level": "mid-level", "geography": "north  america"}
    results = client.post(SCORE, json={"leads": [canonical, sloppy]}).json()["scores"]
    assert results[0]["probabilities"] == results[1]["probabilities"]
    assert results[1]["warnings"] == []


@pytest.mark.parametrize(
    "naive_and_utc",
    [("2024-08-20T10:30:00", "2024-08-20T10:30:00Z"), ("2024-08-20T10:30:00", "2024-08-20T12:30:00+02:00")],
)
def test_naive_timestamp_is_read_as_utc(client, naive_and_utc):
    """A timestamp without offset scores exactly like the same instant written in UTC."""
    naive, aware = naive_and_utc
    lead = copy.deepcopy(EXAMPLE_LEAD)
    leads = [{**lead, "last_campaign_interaction": naive}, {**lead, "last_campaign_interaction": aware}]
    results = client.post(SCORE, json={"leads": leads}).json()["scores"]
    assert results[0]["probabilities"] == results[1]["probabilities"]


def test_nulls_mean_missing(client):
    """Explicit nulls (core and custom) are missing inputs, not errors, and lower features_used."""
    lead = {"industry": None, "website_sessions": None, "custom_features": {"custom_feature_1": None}}
    response = client.post(SCORE, json={"leads": [lead, {"custom_features": None}]})
    assert response.status_code == 200
    assert [s["features_used"] for s in response.json()["scores"]] == [0, 0]


def test_integral_float_is_accepted_for_a_count(client):
    """15.0 is an integer in JSON Schema terms, as exported by tools that store counts as floats."""
    response = client.post(SCORE, json={"leads": [{"website_sessions": 15.0}, {"website_sessions": 15}]})
    assert response.status_code == 200
    first, second = response.json()["scores"]
    assert first["probabilities"] == second["probabilities"]


def test_500_leads_are_accepted(client):
    """A batch of exactly 500 leads is within the contract and scores in order."""
    leads = synthetic_leads(500, seed=13)
    response = client.post(SCORE, json={"request_id": "max-batch", "leads": leads})
    assert response.status_code == 200
    check_score_response(response.json(), {"request_id": "max-batch", "leads": leads}, model_version="test-tiny")
