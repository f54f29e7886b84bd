"""A real lake for the report's tests: synthetic leads scored by a real server, their known outcomes beside them.

The server serves the session's tiny bundle; the leads are rows of the very table it was trained on (the same
generator, size and seed), so the baseline is drawn from the bundle's reference distribution. Scored in this
order: test traffic (ids of real leads, sent first so that counting it would change their first score), the
baseline population, a later re-score of some baseline leads, then (after `split`) a population whose email
engagement, website sessions and company size are shifted. Outcomes: the generator's own outcome of each
baseline lead (half as `outcome`, half as `converted`), one duplicate, and a conversion dated before the score,
all posted to `POST /api/v1/outcomes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from leadscore.outcomes.table import read_outcomes
from leadscore.training.synth import AS_OF, synthesize
from tests.support.lake import settings_from_env
from tests.support.leads import synthetic_leads
from tests.support.server import start_server

# The tiny bundle's training table (tests/conftest.py): synthesize(3000, seed=11).
TRAINING_ROWS, TRAINING_SEED = 3000, 11
BASELINE = 1200
SHIFTED = 1200
RESCORED = 100
SHIFTED_INPUTS = ("company_size", "email_engagement_score", "website_sessions")


@dataclass(frozen=True)
class ScoredLake:
    """The lake's environment and what the test knows about it."""

    env: dict[str, str]
    split: datetime  # after the baseline, before the shifted population
    first: list[dict[str, Any]]  # each baseline lead's first production answer
    outcomes: np.ndarray  # each baseline lead's true outcome 1..5
    early: str  # the lead whose only conversion is dated before its score


def _reanchored(leads: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Recency as the generator meant it: the last interaction as long before now as it was before AS_OF."""
    for lead in leads:
        if "last_campaign_interaction" in lead:
            moment = datetime.fromisoformat(lead["last_campaign_interaction"])
            lead["last_campaign_interaction"] = (now - (AS_OF - moment)).isoformat()
    return leads


def _shifted(leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, lead in enumerate(leads):
        lead["lead_id"] = f"shifted-{i}"
        if "email_engagement_score" in lead:
            lead["email_engagement_score"] = round(lead["email_engagement_score"] * 0.3, 4)
        if "website_sessions" in lead:
            lead["website_sessions"] += 12
        if "company_size" in lead and i % 3:
            lead["company_size"] = "Enterprise"
    return leads


def _score(client: httpx.Client, leads: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    answers = []
    for start in range(0, len(leads), 500):
        body = {"request_id": f"{request_id}-{start}", "leads": leads[start : start + 500]}
        response = client.post("/api/v1/scoring/score", json=body)
        assert response.status_code == 200, response.text
        answers += response.json()["scores"]
    return answers


def _post_outcomes(client: httpx.Client, outcomes: np.ndarray, early: str, before: datetime) -> int:
    """Post each baseline lead's outcome (half as `outcome`, half as `converted`), a duplicate and an early one."""
    now = datetime.now(UTC).isoformat()
    items: list[dict[str, Any]] = [
        {
            "lead_id": f"lead-{i}",
            "occurred_at": now,
            **({"outcome": int(o)} if i % 2 == 0 else {"converted": bool(o >= 4)}),
        }
        for i, o in enumerate(outcomes)
    ]
    items += [items[0], {"lead_id": early, "occurred_at": before.isoformat(), "converted": True}]
    for start in range(0, len(items), 1000):
        response = client.post("/api/v1/outcomes", json={"outcomes": items[start : start + 1000]})
        assert response.status_code == 202, response.text
    return len(items) - 1  # the duplicate is stored once


@pytest.fixture(scope="session")
def scored_lake(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> ScoredLake:
    """The lake described in the module docstring, its server stopped (every row committed)."""
    tmp_path = tmp_path_factory.mktemp("report-lake")
    before = datetime.now(UTC) - timedelta(hours=1)
    env = {"LEADSCORE_MODEL_DIR": str(tiny_bundle), "LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS": "60"}
    server = start_server(tmp_path, env=env)
    try:
        now = datetime.now(UTC)
        rows = _reanchored(synthetic_leads(TRAINING_ROWS, seed=TRAINING_SEED), now)
        baseline = rows[:BASELINE]
        outcomes = synthesize(TRAINING_ROWS, seed=TRAINING_SEED)["outcome"].to_numpy()[:BASELINE]
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            fake = [{**lead, "email_engagement_score": 1.0, "form_fills": 40} for lead in baseline[:300]]
            _score(client, fake, "load-test-1")
            first = _score(client, baseline, "report-baseline")
            rescored = [{**lead, "email_engagement_score": 0.0} for lead in baseline[:RESCORED]]
            _score(client, rescored, "report-rescore")
            split = datetime.now(UTC)
            _score(client, _shifted(rows[BASELINE : BASELINE + SHIFTED]), "report-shifted")
            early = f"lead-{int(np.flatnonzero(outcomes < 4)[0])}"  # did not convert; its conversion predates its score
            posted = _post_outcomes(client, outcomes, early, before)
    finally:
        assert server.stop() == 0, server.log()[-3000:]
    stored = read_outcomes(settings_from_env(server.env)).num_rows
    assert stored == posted, f"{stored} outcomes in the table, {posted} posted"
    env = {k: v for k, v in server.env.items() if k.startswith("LEADSCORE_")}
    return ScoredLake(env=env, split=split, first=first, outcomes=outcomes, early=early)


@pytest.fixture
def report_env(scored_lake: ScoredLake, monkeypatch: pytest.MonkeyPatch) -> ScoredLake:
    """The scored lake's settings in this process's environment (the CLI reads them)."""
    for key, value in scored_lake.env.items():
        monkeypatch.setenv(key, value)
    return scored_lake
