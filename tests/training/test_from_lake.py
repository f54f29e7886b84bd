"""Training from the lake: production scores as scored, joined point in time to the outcomes that followed them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.errors import LeadscoreError
from leadscore.features.encode import encode
from leadscore.features.spec import ENGINEERED_NAMES
from leadscore.lake.table import load_table
from leadscore.model.bundle import Scorer, load_bundle
from leadscore.training.contract import validate_training_table
from leadscore.training.from_lake import build_training_set, train_from_lake
from leadscore.training.synth import AS_OF
from leadscore.training.train import TrainConfig
from tests.support.lake import local_settings
from tests.support.outcomes import api_leads, record_outcomes, score_into_lake
from tests.support.server import start_server

SCORED_AT = datetime(2026, 10, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
# Servers that start quickly: XGBoost's own predictor, commits in the flusher thread (both paths are tested elsewhere).
QUICK_START = {"LEADSCORE_PREDICTOR": "xgboost", "LEADSCORE_LAKE_COMMIT_IN_SUBPROCESS": "false"}


def _labels(settings_path: Path) -> dict[str, int]:
    data = build_training_set(local_settings(settings_path))
    return dict(zip(data.table["lead_id"].to_pylist(), data.table["outcome"].to_pylist(), strict=True))


def test_an_outcome_dated_before_the_score_is_not_used(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """S0's only outcome precedes its score: left out; S1 is labelled by its outcome after the score, not before."""
    settings = local_settings(tmp_path)
    score_into_lake(settings, tiny_scorer, 3, SCORED_AT)
    record_outcomes(settings, ["S0", "S1"], [5, 1], SCORED_AT - DAY, "before")
    record_outcomes(settings, ["S1", "S2"], [4, 2], SCORED_AT + DAY, "after")
    assert _labels(tmp_path) == {"S1": 4, "S2": 2}


def test_the_first_outcome_after_the_score_is_the_label(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Of two outcomes after the score, the earlier one labels the lead; one past the window labels nothing."""
    settings = local_settings(tmp_path)
    score_into_lake(settings, tiny_scorer, 2, SCORED_AT)
    record_outcomes(settings, ["S0"], [3], SCORED_AT + 2 * DAY, "later")
    record_outcomes(settings, ["S0"], [5], SCORED_AT + DAY, "sooner")
    record_outcomes(settings, ["S1"], [5], SCORED_AT + 120 * DAY, "past-window")
    assert _labels(tmp_path) == {"S0": 5}


def test_test_traffic_and_later_scores_are_left_out(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Load-test requests and is_test rows never train; a lead scored twice counts once, from its first score."""
    settings = local_settings(tmp_path)
    score_into_lake(settings, tiny_scorer, 2, SCORED_AT, prefix="T", request_id="load-test-7")
    score_into_lake(settings, tiny_scorer, 2, SCORED_AT, prefix="F", is_test=True)
    score_into_lake(settings, tiny_scorer, 2, SCORED_AT)
    score_into_lake(settings, tiny_scorer, 2, SCORED_AT + 3 * DAY, request_id="rescore")
    record_outcomes(settings, ["T0", "F0", "S0", "S1"], [5, 5, 5, 4], SCORED_AT + DAY)
    data = build_training_set(settings)
    assert data.table["lead_id"].to_pylist() == ["S0", "S1"]
    assert data.scored_at == [SCORED_AT.replace(tzinfo=None)] * 2
    assert data.counts["production_predictions"] == 4


def test_recency_is_what_it_was_at_scoring_time(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Encoded at the training reference time, the moved timestamps give the days-since the lake recorded."""
    settings = local_settings(tmp_path)
    score_into_lake(settings, tiny_scorer, 20, SCORED_AT)
    record_outcomes(settings, [f"S{i}" for i in range(20)], [3] * 20, SCORED_AT + DAY)
    data = build_training_set(settings, as_of=AS_OF)
    columns = validate_training_table(data.table, allow_missing=True).columns
    days = encode(columns, 20, AS_OF).matrix[:, ENGINEERED_NAMES.index("days_since_last_interaction")]
    recorded = load_table(settings.lake_table_config()).scan().to_arrow().sort_by("lead_id")
    expected = recorded["engineered_days_since_last_interaction"].to_numpy(zero_copy_only=False)
    order = np.argsort(data.table["lead_id"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(days[order], expected.astype(np.float64), rtol=1e-5, equal_nan=True)


def test_too_few_labelled_leads_train_nothing(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Fewer labelled leads than the minimum: a LeadscoreError saying how many there are, and no bundle."""
    settings = local_settings(tmp_path)
    score_into_lake(settings, tiny_scorer, 5, SCORED_AT)
    record_outcomes(settings, [f"S{i}" for i in range(5)], [3] * 5, SCORED_AT + DAY)
    with pytest.raises(LeadscoreError, match="only 5 production leads"):
        train_from_lake(settings, tmp_path / "challenger", TrainConfig(num_boost_round=2))
    assert not (tmp_path / "challenger").exists()


def test_champion_and_challenger_are_judged_on_the_same_held_out_leads(
    tmp_path: Path, tiny_scorer: Scorer, tiny_bundle: Path
) -> None:
    """The report compares both models (and the scores as recorded) on one held-out set; the bundle loads."""
    settings = local_settings(tmp_path, model_dir=tiny_bundle)
    leads = score_into_lake(settings, tiny_scorer, 600, SCORED_AT)
    record_outcomes(settings, leads.lead_ids, leads.truth.tolist(), SCORED_AT + DAY)
    out = tmp_path / "challenger"
    report = train_from_lake(settings, out, TrainConfig(num_boost_round=10, max_depth=3, version="challenger-1"))
    assert report.held_out == 120
    for side in (report.champion, report.challenger, report.as_scored):
        assert side["rows"] == 120
        assert sum(s["leads"] for s in side["per_score"]) == 120
        assert 0.5 < side["auc_converted"] <= 1.0
    assert report.as_scored["versions"] == [tiny_scorer.version] == [report.champion["version"]]
    assert load_bundle(out).version == "challenger-1"


@pytest.fixture
def labelled_lake_env(tmp_path: Path, tiny_bundle: Path, tiny_scorer: Scorer) -> dict[str, str]:
    """A lake of 300 scored leads with an outcome a day after each score; the environment that names it."""
    settings = local_settings(tmp_path, model_dir=tiny_bundle)
    leads = score_into_lake(settings, tiny_scorer, 300, SCORED_AT)
    record_outcomes(settings, leads.lead_ids, leads.truth.tolist(), SCORED_AT + DAY)
    return {
        "LEADSCORE_LAKE_URI": settings.lake_uri,
        "LEADSCORE_SPOOL_DIR": str(settings.spool_dir),
        "LEADSCORE_MODEL_DIR": str(tiny_bundle),
        "LEADSCORE_PREDICTOR": "xgboost",
    }


def test_the_holdout_option_sets_the_compared_share(tmp_path: Path, labelled_lake_env: dict[str, str]) -> None:
    """`train --from-lake --holdout 0.3` compares the models on 30% of the labelled leads (90 of 300)."""
    args = ["train", "--from-lake", "--out", str(tmp_path / "c"), "--rounds", "3", "--holdout", "0.3"]
    result = CliRunner().invoke(app, args, env=labelled_lake_env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["held_out"] == 90


def test_the_window_option_bounds_which_outcomes_label_a_score(
    tmp_path: Path, labelled_lake_env: dict[str, str]
) -> None:
    """With `--window-days 0.5`, outcomes a day after their scores label nothing: the run says so and fails."""
    args = ["train", "--from-lake", "--out", str(tmp_path / "c"), "--rounds", "3", "--window-days", "0.5"]
    result = CliRunner().invoke(app, args, env=labelled_lake_env)
    assert result.exit_code != 0
    assert "only 0 production leads have an outcome after their score (within 0.5 days)" in result.output


def test_lake_options_without_from_lake_are_refused(tmp_path: Path) -> None:
    """--holdout with a DATA file is an error that says the option belongs to --from-lake."""
    data = tmp_path / "leads.csv"
    data.write_text("outcome\n1\n")
    result = CliRunner().invoke(app, ["train", str(data), "--holdout", "0.3"])
    assert result.exit_code != 0
    assert "they go with --from-lake" in result.output


def test_train_from_lake_makes_a_bundle_the_server_serves(tmp_path: Path, tiny_bundle: Path) -> None:
    """Leads scored and outcomes posted through a real server train a challenger that a new server then serves."""
    leads, truth = api_leads(200, seed=4)
    first = start_server(tmp_path, env={**QUICK_START, "LEADSCORE_MODEL_DIR": str(tiny_bundle)})
    try:
        scored = httpx.post(f"{first.url}/api/v1/scoring/score", json={"leads": leads}, timeout=30)
        assert scored.status_code == 200
        outcomes = [
            {"lead_id": lead["lead_id"], "outcome": int(t), "converted": bool(t >= 4),
             "occurred_at": datetime.now(UTC).isoformat()}
            for lead, t in zip(leads, truth, strict=True)
        ]  # fmt: skip
        assert httpx.post(f"{first.url}/api/v1/outcomes", json={"outcomes": outcomes}, timeout=30).status_code == 202
    finally:
        assert first.stop() == 0  # both sinks commit what they hold on the way out
    out = tmp_path / "challenger"
    env = {k: v for k, v in first.env.items() if k.startswith("LEADSCORE_")}
    result = CliRunner().invoke(
        app, ["train", "--from-lake", "--out", str(out), "--rounds", "5", "--version", "lake-1"], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["leads_labelled_after_score"] == 200
    assert report["champion"]["rows"] == report["challenger"]["rows"] == 40
    second = start_server(tmp_path, env={**QUICK_START, "LEADSCORE_MODEL_DIR": str(out)})
    try:
        answer = httpx.post(f"{second.url}/api/v1/scoring/score", json={"leads": leads[:1]}, timeout=30)
        assert answer.json()["model_version"] == "lake-1"
    finally:
        second.stop()
