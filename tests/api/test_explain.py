"""Scoring with `explain`: reasons and drivers per lead, the default setting, and a loop that keeps serving."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from leadscore.api.decode import parse_leads
from leadscore.api.schemas import EXAMPLE_LEAD, ScoreResponse
from leadscore.app import create_app
from leadscore.config import Settings
from leadscore.features.encode import encode
from leadscore.model.bundle import Scorer, load_bundle
from tests.support.leads import synthetic_leads
from tests.support.waiting import wait_until

SCORE = "/api/v1/scoring/score"


def test_explain_returns_reasons_and_drivers_per_lead(client, tiny_scorer):
    """Each lead gets up to 3 raising and 3 lowering factors and drivers that add up to its margin."""
    leads = [EXAMPLE_LEAD, *synthetic_leads(4, seed=2)]
    body = client.post(SCORE, json={"leads": leads, "explain": True}).json()
    ScoreResponse.model_validate(body)
    for score in body["scores"]:
        reasons, drivers = score["reasons"], score["drivers"]
        assert len(reasons["raising"]) <= 3
        assert len(reasons["lowering"]) <= 3
        assert all(f["contribution"] > 0 and "raises the chance of a" in f["text"] for f in reasons["raising"])
        assert all(f["contribution"] < 0 and "lowers the chance of a" in f["text"] for f in reasons["lowering"])
        assert set(drivers) == {"base", "fit", "engagement", "custom"}
    parsed = parse_leads(orjson.dumps({"leads": leads}))
    matrix = encode(parsed.columns, parsed.size, datetime.now(UTC), categories=tiny_scorer.categories).matrix
    margin = tiny_scorer.booster.inplace_predict(matrix, predict_type="margin").reshape(-1, 5)
    for i, score in enumerate(body["scores"]):
        assert sum(score["drivers"].values()) == pytest.approx(margin[i, score["score"] - 1], abs=1e-4)


def test_explain_is_off_by_default(client):
    """Without `explain`, a score has no reasons or drivers (the body is what it was before)."""
    score = client.post(SCORE, json={"leads": [EXAMPLE_LEAD]}).json()["scores"][0]
    assert "reasons" not in score
    assert "drivers" not in score


@pytest.fixture
def explaining_client(settings: Settings) -> Iterator[TestClient]:
    """An app whose setting turns explanations on by default."""
    on = settings.model_copy(update={"explain_default": True})
    with TestClient(create_app(on), raise_server_exceptions=False) as test_client:
        yield test_client


def test_setting_turns_explain_on_and_the_request_wins(explaining_client):
    """LEADSCORE_EXPLAIN_DEFAULT explains every score unless the request says `explain: false`."""
    default = explaining_client.post(SCORE, json={"leads": [EXAMPLE_LEAD]}).json()["scores"][0]
    refused = explaining_client.post(SCORE, json={"leads": [EXAMPLE_LEAD], "explain": False}).json()["scores"][0]
    assert "reasons" in default
    assert "drivers" in default
    assert "reasons" not in refused


@pytest.mark.parametrize("value", ["yes", 1, [True]])
def test_explain_must_be_a_boolean(client, value):
    """`explain` takes true, false or null; anything else is a 422 naming the field."""
    response = client.post(SCORE, json={"leads": [EXAMPLE_LEAD], "explain": value})
    assert response.status_code == 422
    assert [e["location"] for e in response.json()["errors"]] == ["explain"]


class HeldExplainer:
    """Wraps the real explainer; a call waits, off the event loop, until the test lets it go."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.started = threading.Event()
        self.release = threading.Event()

    def contributions(self, matrix: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Signal, hold until released, then explain."""
        self.started.set()
        assert self.release.wait(30), "the test never released the explanation"
        return self.inner.contributions(matrix, classes)


def test_a_lead_is_answered_while_500_are_being_explained(settings, tiny_bundle):
    """While a 500-lead explain runs, a 1-lead request is scored: the kernel runs off the event loop."""
    scorer: Scorer = load_bundle(tiny_bundle)
    held = HeldExplainer(scorer.explainer)
    scorer.explainer = held  # type: ignore[assignment]
    big: dict[str, Any] = {}
    with TestClient(create_app(settings, scorer=scorer), raise_server_exceptions=False) as client:
        leads = synthetic_leads(500, seed=8)

        def explain_500() -> None:
            big["response"] = client.post(SCORE, json={"leads": leads, "explain": True})

        thread = threading.Thread(target=explain_500)
        thread.start()
        try:
            wait_until(held.started.is_set, timeout=30, what="the 500-lead explanation started")
            small = client.post(SCORE, json={"leads": [EXAMPLE_LEAD]})
            assert small.status_code == 200
            assert "response" not in big  # answered while the explanation was still held
        finally:
            held.release.set()
            thread.join(60)
    assert big["response"].status_code == 200
    assert len(big["response"].json()["scores"][499]["reasons"]["raising"]) <= 3


def _lake_query(env: dict[str, str], sql: str) -> list[dict[str, Any]]:
    """`leadscore lake query --output json` as a user runs it against a server's lake."""
    result = subprocess.run(
        [sys.executable, "-m", "leadscore", "lake", "query", sql, "--output", "json"],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    rows: list[dict[str, Any]] = orjson.loads(result.stdout)
    return rows


def test_the_lake_stores_the_reasons_a_real_server_answered(server):
    """Explained leads are stored with the reasons and drivers answered; a lead not explained has explained=false."""
    leads = [{**lead, "lead_id": f"X{i}"} for i, lead in enumerate(synthetic_leads(3, seed=4))]
    explained = httpx.post(f"{server.url}{SCORE}", json={"leads": leads, "explain": True}, timeout=30)
    plain = httpx.post(f"{server.url}{SCORE}", json={"leads": [{**EXAMPLE_LEAD, "lead_id": "P0"}]}, timeout=30)
    assert (explained.status_code, plain.status_code) == (200, 200)
    assert server.stop() == 0  # a clean stop commits every recorded row
    rows = {
        row["lead_id"]: row
        for row in _lake_query(
            server.env,
            "SELECT lead_id, explained, reason_raising_fields, reason_raising_contributions, reason_lowering_fields, "
            "reason_lowering_contributions, driver_base, driver_fit, driver_engagement, driver_custom "
            "FROM lead_score_dev",
        )
    }
    for score in explained.json()["scores"]:
        row, reasons = rows[score["lead_id"]], score["reasons"]
        assert row["explained"] is True
        assert row["reason_raising_fields"] == [f["field"] for f in reasons["raising"]]
        assert row["reason_raising_contributions"] == [f["contribution"] for f in reasons["raising"]]
        assert row["reason_lowering_fields"] == [f["field"] for f in reasons["lowering"]]
        assert row["reason_lowering_contributions"] == [f["contribution"] for f in reasons["lowering"]]
        assert {k.removeprefix("driver_"): v for k, v in row.items() if k.startswith("driver_")} == score["drivers"]
    assert rows["P0"]["explained"] is False
    assert rows["P0"]["reason_raising_fields"] is None
    assert rows["P0"]["driver_base"] is None
