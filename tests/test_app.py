"""Application wiring that no route shows: garbage-collector tuning and the explainer at start-up."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from leadscore.api.schemas import EXAMPLE_LEAD
from leadscore.app import load_scorer
from leadscore.config import Settings
from leadscore.model.walk import WALK_NAME


def test_startup_freezes_long_lived_objects_and_raises_the_gc_threshold(client: TestClient) -> None:
    """After start-up the model and libraries are frozen out of the collector and young collections are rarer."""
    assert client.get("/api/v1/health/live").status_code == 200
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] >= 50_000


def test_scoring_fast_lane_serves_both_scoring_paths() -> None:
    """The fast lane takes POSTs to the scoring path and its older alias, each with its documented route."""
    from leadscore.api.fastlane import scoring_routes  # noqa: PLC0415
    from leadscore.api.routes import router, score  # noqa: PLC0415

    routes = scoring_routes(router, score)
    assert sorted(routes) == ["/api/v1/score", "/api/v1/scoring/score"]
    assert all(route.path == path and route.methods == {"POST"} for path, route in routes.items())


def test_scoring_through_the_fast_lane_reports_the_route_template(client: TestClient) -> None:
    """A scored request is counted under its route template, as FastAPI's router would have set it."""
    from leadscore.api.schemas import EXAMPLE_REQUEST  # noqa: PLC0415

    assert client.post("/api/v1/score", json=EXAMPLE_REQUEST).status_code == 200
    exposition = client.get("/metrics").text
    assert 'route="/api/v1/score"' in exposition


def test_scoring_routes_declare_no_dependencies_the_fast_lane_would_skip() -> None:
    """The fast lane calls the handler itself: a FastAPI dependency added to the scoring route would never run."""
    from leadscore.api.fastlane import scoring_routes  # noqa: PLC0415
    from leadscore.api.routes import router, score  # noqa: PLC0415

    for route in scoring_routes(router, score).values():
        assert route.dependant.dependencies == []
        assert route.dependencies == []


def test_trailing_slash_is_a_404_without_a_location(client: TestClient) -> None:
    """A path with a trailing slash is a 404 envelope, never a redirect echoing the client's Host header."""
    for method, path in (("GET", "/api/v1/health/live/"), ("POST", "/api/v1/scoring/score/")):
        response = client.request(method, path, headers={"host": "evil.example"}, follow_redirects=False)
        assert response.status_code == 404
        assert "location" not in response.headers
        assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("changes", "built"),
    [({}, False), ({"explainer_at_start": True}, True), ({"explain_default": True}, True)],
)
def test_the_explainer_is_built_at_start_only_when_asked_or_explaining_by_default(
    settings: Settings, changes: dict[str, bool], built: bool
) -> None:
    """A service that explains on request only leaves the explainer to the first explanation."""
    scorer = load_scorer(settings.model_copy(update=changes))
    assert scorer.ready
    assert scorer.explainer_built is built


@pytest.mark.parametrize("walk", [True, False])
def test_the_walk_of_small_calls_follows_its_setting(settings: Settings, walk: bool) -> None:
    """LEADSCORE_WALK_SMALL_CALLS (on by default) decides whether the service's scorer walks small calls."""
    assert Settings.model_fields["walk_small_calls"].default is True
    scorer = load_scorer(settings.model_copy(update={"walk_small_calls": walk}))
    assert scorer.ready
    assert (WALK_NAME in scorer.predictor) is walk
    assert scorer.predictor.startswith("onedal")


def test_a_service_is_ready_before_and_explains_at_its_first_explained_request(client: TestClient) -> None:
    """Readiness does not wait for the explainer; the first explained request builds it and is answered."""
    assert client.get("/api/v1/health/ready").status_code == 200
    response = client.post("/api/v1/scoring/score", json={"leads": [EXAMPLE_LEAD], "explain": True})
    assert response.status_code == 200
    assert set(response.json()["scores"][0]["drivers"]) == {"base", "fit", "engagement", "custom"}
