"""The OpenAPI document and the docs page carry the contract and its example."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from leadscore.api.schemas import EXAMPLE_REQUEST, EXAMPLE_RESPONSE, ScoreResponse
from leadscore.app import create_app


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


def test_response_example_is_the_packaged_models_answer_to_the_request_example(default_scorer, settings):
    """The documented answer is what the packaged model says to the documented request (timings aside)."""
    with TestClient(create_app(settings, scorer=default_scorer)) as packaged:
        answer = packaged.post("/api/v1/scoring/score", json=EXAMPLE_REQUEST).json()
    assert _without_timings(answer) == _without_timings(EXAMPLE_RESPONSE)


def _without_timings(body: dict) -> dict:
    """The answer without what changes from run to run (times), its scores likewise."""
    timings = {"timestamp", "processing_time_ms", "prediction_time_ms"}
    kept = {k: v for k, v in body.items() if k not in timings}
    kept["scores"] = [{k: v for k, v in s.items() if k not in timings} for s in body["scores"]]
    return kept


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


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2000",
                  "--virtual-time-budget=15000")  # fmt: skip
SCORE_OPERATION = "#/scoring/score_api_v1_scoring_score_post"


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: scripts/setup-chromium.sh installs it"
    profile = tmp_path / f"chromium-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, timeout=120, check=True
    )


@pytest.mark.e2e
def test_docs_render_offline_in_a_browser_with_the_scoring_operation(server, tmp_path):
    """Headless Chromium, which reaches nothing but the server, renders /docs with the scoring operation open."""
    page = f"{server.url}/docs{SCORE_OPERATION}"
    dom = _chromium(tmp_path, "--dump-dom", page).stdout.decode()
    assert "/api/v1/scoring/score" in dom
    assert "Score leads" in dom
    assert "batch-scoring-001" in dom
    shot = tmp_path / "docs.png"
    _chromium(tmp_path, f"--screenshot={shot}", page)
    with Image.open(shot) as image:
        grey = image.convert("L")
        assert grey.size == (1280, 2000)
        # A blank page is one colour; the rendered docs have text, code blocks and coloured operation bars.
        assert len(grey.getcolors(maxcolors=256 * 256) or range(256)) > 16
        assert grey.getextrema()[0] < 64
