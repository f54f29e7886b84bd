"""`leadscore lake ddl|query|compact` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.lake.test_query_compact import _fill
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.model.bundle import Scorer

runner = CliRunner()


@pytest.fixture
def lake_env(tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local lake with a day of data, configured as the user's LEADSCORE_LAKE_URI."""
    _fill(tmp_path, tiny_scorer, files=2)
    monkeypatch.setenv("LEADSCORE_LAKE_URI", str(tmp_path / "lake"))
    return tmp_path / "lake"


def test_ddl_prints_create_table_for_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lake ddl` prints the CREATE EXTERNAL TABLE named for the environment."""
    monkeypatch.setenv("LEADSCORE_LAKE_URI", "s3://analytics/leads")
    result = runner.invoke(app, ["lake", "ddl"])
    assert result.exit_code == 0
    assert result.stdout.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `lead_score_dev`")
    assert "LOCATION 's3://analytics/leads/'" in result.stdout


def test_query_prints_rows_as_json(lake_env: Path) -> None:
    """`lake query --output json` prints the result rows."""
    result = runner.invoke(app, ["lake", "query", "SELECT count(*) AS n FROM lead_score_dev", "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": 4}]


def test_query_prints_a_table_by_default(lake_env: Path) -> None:
    """The default output is an aligned table with a row count."""
    result = runner.invoke(app, ["lake", "query", "SELECT is_test, count(*) AS n FROM lead_score_dev GROUP BY 1"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split() == ["is_test", "n"]
    assert "(2 rows)" in result.stdout


def test_bad_sql_is_a_clear_error(lake_env: Path) -> None:
    """SQL errors exit non-zero with the database's message."""
    result = runner.invoke(app, ["lake", "query", "SELEC nothing"])
    assert result.exit_code == 2
    assert "query failed" in result.output


def test_compact_merges_the_given_day(lake_env: Path) -> None:
    """`lake compact --date` reports the merge it did."""
    result = runner.invoke(app, ["lake", "compact", "--date", "2026-06-01"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "partition": "year=2026/month=06/day=01",
        "input_files": 2,
        "rows": 4,
        "output": json.loads(result.stdout)["output"],
    }
    assert len(list(lake_env.rglob("*.parquet"))) == 1


def test_compact_refuses_today_without_force(lake_env: Path) -> None:
    """Today's partition is still being written, so compacting it needs --force."""
    from datetime import UTC, datetime  # noqa: PLC0415

    result = runner.invoke(app, ["lake", "compact", "--date", datetime.now(UTC).strftime("%Y-%m-%d")])
    assert result.exit_code == 2
    assert "still being written" in result.output


def test_compact_rejects_a_malformed_date(lake_env: Path) -> None:
    """A date not in YYYY-MM-DD form is refused with a clear message."""
    result = runner.invoke(app, ["lake", "compact", "--date", "01/06/2026"])
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output
