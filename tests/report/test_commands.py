"""`leadscore report` and `leadscore drift export` over a real lake, checked against a direct computation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from leadscore.cli import app
from tests.report.conftest import BASELINE, SHIFTED_INPUTS, ScoredLake

runner = CliRunner()


def _report(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["report", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _expected(lake: ScoredLake) -> pd.DataFrame:
    """Each baseline lead's first production score and probability, and whether it converted after it."""
    frame = pd.DataFrame(
        {
            "lead_id": [a["lead_id"] for a in lake.first],
            "score": [a["score"] for a in lake.first],
            "p": [a["probabilities"][3] + a["probabilities"][4] for a in lake.first],
            "converted": lake.outcomes >= 4,
        }
    )
    frame.loc[frame.lead_id == lake.early, "converted"] = False  # its conversion predates the score
    return frame


@pytest.fixture(scope="module")
def baseline(scored_lake: ScoredLake) -> dict[str, Any]:
    """The report of the baseline range (before the shifted population)."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in scored_lake.env.items():
            patch.setenv(key, value)
        return _report("--until", scored_lake.split.isoformat())


def test_report_counts_each_leads_first_production_score_once(baseline, scored_lake):
    """Test traffic and later re-scores are left out: one row per baseline lead, with its first score."""
    (model,) = baseline["models"]
    expected = _expected(scored_lake).groupby("score").size()
    assert model["leads"] == BASELINE
    assert {r["score"]: r["leads"] for r in model["scores"]} == expected.to_dict()


def test_report_figures_per_score_match_a_direct_computation(baseline, scored_lake):
    """Share, conversions, recall, rate and both lifts per score are those computed with pandas."""
    frame = _expected(scored_lake)
    per = frame.groupby("score").agg(leads=("converted", "size"), conversions=("converted", "sum"))
    per["rate"] = per.conversions / per.leads
    overall = frame.converted.mean()
    (model,) = baseline["models"]
    assert model["conversions"] == int(frame.converted.sum())
    for row in model["scores"]:
        want = per.loc[row["score"]]
        assert row["conversions"] == want.conversions
        assert row["share_of_leads"] == pytest.approx(want.leads / BASELINE)
        assert row["recall"] == pytest.approx(want.conversions / frame.converted.sum())
        assert row["conversion_rate"] == pytest.approx(want.rate)
        assert row["lift_vs_overall"] == pytest.approx(want.rate / overall)
        assert row["lift_vs_lowest"] == pytest.approx(want.rate / per.rate.iloc[0])


def test_report_auc_matches_scikit_learn(baseline, scored_lake):
    """AUC of converted against the score and against P(score >= 4) equal scikit-learn's."""
    frame = _expected(scored_lake)
    (model,) = baseline["models"]
    assert model["auc_score"] == pytest.approx(roc_auc_score(frame.converted, frame.score))
    assert model["auc_probability"] == pytest.approx(roc_auc_score(frame.converted, frame.p), abs=1e-9)


def test_report_calibration_bins_match_a_direct_computation(baseline, scored_lake):
    """Each probability bin holds the leads pandas puts there, with their mean probability and observed rate."""
    frame = _expected(scored_lake)
    frame["bin"] = np.minimum(np.floor(frame.p * 10), 9) / 10
    per = frame.groupby("bin").agg(leads=("p", "size"), mean_p=("p", "mean"), observed=("converted", "mean"))
    (model,) = baseline["models"]
    got = {b["low"]: (b["leads"], b["mean_probability"], b["observed_rate"]) for b in model["calibration"]}
    assert sorted(got) == pytest.approx(sorted(per.index))
    for low, (leads, mean_p, observed) in got.items():
        want = per.loc[per.index[np.isclose(per.index, low)][0]]
        assert (leads, mean_p, observed) == (want.leads, pytest.approx(want.mean_p), pytest.approx(want.observed))


def test_report_verdict_has_the_three_madkudu_lines(baseline):
    """The verdict says pass or fail for the top tiers' share of leads and of conversions and best vs worst."""
    (model,) = baseline["models"]
    names = [c["name"] for c in model["verdict"]]
    assert names == [
        "top tiers hold 15-35% of leads",
        "top tiers hold 60%+ of conversions",
        "best tier converts >= 10x the worst",
    ]
    assert model["passed"] == all(c["passed"] for c in model["verdict"])


def test_baseline_population_does_not_drift(baseline):
    """Leads drawn like the training data flag no input."""
    assert baseline["drift"]["drifted"] == []


def test_psi_flags_exactly_the_shifted_inputs(report_env):
    """A population with three inputs shifted is flagged on those three and no other."""
    body = _report("--since", report_env.split.isoformat())
    assert sorted(body["drift"]["drifted"]) == sorted(SHIFTED_INPUTS)


def test_text_report_prints_the_table_and_the_verdict(report_env):
    """Without --json the report prints the table per score, PASS/FAIL lines and the drift table."""
    result = runner.invoke(app, ["report", "--until", report_env.split.isoformat()])
    assert result.exit_code == 0, result.output
    assert "score  leads" in result.stdout
    assert "top tiers hold 60%+ of conversions" in result.stdout
    assert "drift: largest PSI" in result.stdout


def test_drift_export_prints_emf_and_writes_the_gauges(report_env, tmp_path):
    """`drift export` prints an EMF summary with DriftMaxPsi and a document per input, and the gauges' text."""
    textfile = tmp_path / "drift.prom"
    result = runner.invoke(app, ["drift", "export", "--hours", "1", "--prometheus-file", str(textfile)])
    assert result.exit_code == 0, result.output
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    summary = documents[0]
    assert summary["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Environment", "ModelVersion"]]
    assert summary["DriftMaxPsi"] > 0.25
    assert {d["Input"] for d in documents[1:]} >= set(SHIFTED_INPUTS)
    assert "leadscore_drift_max_psi" in textfile.read_text()


def test_report_sql_is_printed_for_athena(report_env):
    """--sql prints the statements under the Athena table names, without reading the lake."""
    result = runner.invoke(app, ["report", "--sql"])
    assert result.exit_code == 0, result.output
    assert "FROM lead_score_dev" in result.stdout
    assert "LEFT JOIN lead_outcomes" in result.stdout


def test_report_without_a_lake_says_so(monkeypatch, tmp_path):
    """Where there is no lake the report exits 1 naming it, and creates nothing."""
    monkeypatch.setenv("LEADSCORE_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("LEADSCORE_SPOOL_DIR", str(tmp_path / "spool"))
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert not (tmp_path / "lake").exists()


def test_report_refuses_a_malformed_since(report_env):
    """A --since that is not ISO 8601 is refused with exit 2 and an example."""
    result = runner.invoke(app, ["report", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "ISO 8601" in result.stderr
