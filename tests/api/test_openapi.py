"""The OpenAPI document and the docs page carry the contract and its example."""

from __future__ import annotations

import re

from leadscore.api.schemas import EXAMPLE_REQUEST, EXAMPLE_RESPONSE, ScoreResponse


def test_openapi_has_the_score_request_schema_and_example(client):
    """/openapi.json defines ScoreRequest with the full example (34 custom features) and uses it for scoring."""
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    request_schema = schemas["ScoreRequest"]
    assert request_schema["examples"] == [EXAMPLE_REQUEST]
    assert len(request_schema["examples"][0]["leads"][0]["custom_features"]) == 34
    assert request_schema["properties"]["leads"]["maxItems"] == 500
    assert request_schema["additionalProperties"] is False
    assert schemas["Lead"]["additionalProperties"] is False
    for path in ("/api/v1/scoring/score", "/api/v1/score"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ScoreRequest"}


def test_openapi_documents_bounds_and_error_envelope(client):
    """Field bounds and the error envelope are in the document."""
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    engagement = schemas["Lead"]["properties"]["email_engagement_score"]["anyOf"][0]
    assert (engagement["minimum"], engagement["maximum"]) == (0.0, 1.0)
    sessions = schemas["Lead"]["properties"]["website_sessions"]["anyOf"][0]
    assert (sessions["type"], sessions["minimum"]) == ("integer", 0)
    responses = document["paths"]["/api/v1/scoring/score"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "ScoreResponse" in str(responses["200"])


def test_docs_page_is_served(client):
    """/docs serves the interactive documentation page pointing at the OpenAPI document."""
    response = client.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/openapi.json" in response.text


def test_openapi_example_keeps_the_readme_key_order(client):
    """The example request's keys come in the README's order, not sorted."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ScoreRequest"]
    example = schema["examples"][0]
    assert list(example) == list(EXAMPLE_REQUEST)
    assert list(example["leads"][0]) == list(EXAMPLE_REQUEST["leads"][0])


def test_openapi_response_example_is_a_real_answer(client):
    """The scoring 200 example is a real answer (the README's), which the response model accepts."""
    responses = client.get("/openapi.json").json()["paths"]["/api/v1/scoring/score"]["post"]["responses"]
    example = responses["200"]["content"]["application/json"]["example"]
    assert example == EXAMPLE_RESPONSE
    assert ScoreResponse.model_validate(example).scores[0].score == 5


def test_docs_assets_are_served_by_the_package(client):
    """/docs and /redoc load their scripts from this server, never from a public CDN."""
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn.jsdelivr.net" not in html
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
        assert assets
        for asset in assets:
            assert asset.startswith("/")
            assert client.get(asset).status_code == 200
