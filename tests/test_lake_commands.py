"""`leadscore lake ddl|query|compact|forget|requeue` as a user runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.lake.flush import commit_segments
from leadscore.lake.records import serialize
from leadscore.lake.spool import OUTCOMES_SUBDIR, frame
from leadscore.lake_commands import EXIT_BACKLOG_LEFT, spool_exit_status
from leadscore.model.bundle import Scorer
from leadscore.outcomes.sink import serialize as outcomes_serialize
from leadscore.outcomes.table import load_outcomes_table, outcome_batch, read_outcomes
from tests.support.lake import local_settings, scored_rows, table_rows

runner = CliRunner()
DAY = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def lake_env(tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local lake with two commits on 2026-06-01, configured as the user's LEADSCORE_LAKE_URI."""
    config = local_settings(tmp_path).lake_table_config()
    for i in range(2):
        path = tmp_path / f"w-x-{i}.seg"
        path.write_bytes(frame(serialize([scored_rows(tiny_scorer, 2, f"r{i}", DAY)])))
        commit_segments(config, [(path.stem, str(path))])
    monkeypatch.setenv("LEADSCORE_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("LEADSCORE_SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path / "lake"


def test_ddl_prints_the_iceberg_create_table_for_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lake ddl` prints Athena's CREATE TABLE (Iceberg) named for the environment."""
    monkeypatch.setenv("LEADSCORE_LAKE_URI", "s3://analytics/leads")
    result = runner.invoke(app, ["lake", "ddl"])
    assert result.exit_code == 0
    assert result.stdout.startswith("CREATE TABLE IF NOT EXISTS `leadscore_dev`.`lead_score_dev`")
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
    assert "(1 rows)" in result.stdout


def test_a_wide_result_prints_one_line_per_column(lake_env: Path) -> None:
    """SELECT * (170 columns) prints each row as `column  value` lines, not one line wider than the terminal."""
    result = runner.invoke(app, ["lake", "query", "SELECT * FROM lead_score_dev LIMIT 1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "-[ row 1 ]"
    assert any(line.split()[:1] == ["raw_industry"] for line in lines)
    assert max(len(line) for line in lines) < 200


def test_an_unknown_output_format_is_refused(lake_env: Path) -> None:
    """`--output xml` is refused with the valid choices, not silently printed as a table."""
    result = runner.invoke(app, ["lake", "query", "SELECT 1", "--output", "xml"])
    assert result.exit_code == 2
    assert "xml" in result.output


def test_bad_sql_is_a_clear_error(lake_env: Path) -> None:
    """SQL errors exit non-zero with the database's message."""
    result = runner.invoke(app, ["lake", "query", "SELEC nothing"])
    assert result.exit_code == 2
    assert "query failed" in result.output


def test_a_query_of_another_table_name_says_the_lakes(lake_env: Path) -> None:
    """A table the query names that does not exist (exit 2) gets the database's message and the lake's table name."""
    result = runner.invoke(app, ["lake", "query", "SELECT count(*) FROM predictions"])
    assert result.exit_code == 2
    assert "predictions does not exist" in result.output
    assert "the lake's table here is lead_score_dev" in result.output


def test_query_of_a_lake_that_does_not_exist_fails_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query where there is no lake says so (exit 1) and leaves no empty lake behind."""
    monkeypatch.setenv("LEADSCORE_LAKE_URI", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["lake", "query", "SELECT count(*) FROM lead_score_dev"])
    assert result.exit_code == 1
    assert "no lake table" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_compact_merges_the_given_day(lake_env: Path) -> None:
    """`lake compact --date` reports the merge it did."""
    result = runner.invoke(app, ["lake", "compact", "--date", "2026-06-01"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["partition"], report["input_files"], report["rows"], report["output_files"]) == (
        "year=2026/month=06/day=01", 2, 4, 1,
    )  # fmt: skip


def test_compact_refuses_today_without_force(lake_env: Path) -> None:
    """Today's partition is still being written, so compacting it needs --force."""
    result = runner.invoke(app, ["lake", "compact", "--date", datetime.now(UTC).strftime("%Y-%m-%d")])
    assert result.exit_code == 2
    assert "still being written" in result.output


def test_compact_rejects_a_malformed_date(lake_env: Path) -> None:
    """A date not in YYYY-MM-DD form is refused with a clear message."""
    result = runner.invoke(app, ["lake", "compact", "--date", "01/06/2026"])
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output


def test_forget_deletes_a_lead_and_prints_the_count(lake_env: Path, tmp_path: Path) -> None:
    """`lake forget --lead-id` deletes that lead's rows in every request and prints how many."""
    result = runner.invoke(app, ["lake", "forget", "--lead-id", "L1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted_rows"] == 2
    assert "L1" not in table_rows(local_settings(tmp_path)).column("lead_id").to_pylist()


def test_forget_needs_a_lead_or_request(lake_env: Path) -> None:
    """Without --lead-id or --request-id nothing is deleted and the user is told what to give."""
    result = runner.invoke(app, ["lake", "forget"])
    assert result.exit_code == 2
    assert "--lead-id" in result.output


def test_requeue_commits_a_readable_segment_and_keeps_a_damaged_one(
    lake_env: Path, tmp_path: Path, tiny_scorer: Scorer
) -> None:
    """`lake requeue` commits what quarantined segments hold; one still damaged stays in quarantine."""
    quarantine = tmp_path / "spool" / "quarantine"
    quarantine.mkdir(parents=True)
    (quarantine / "w-q-000000000001.seg").write_bytes(frame(serialize([scored_rows(tiny_scorer, 1, "requeued")])))
    damaged = bytearray(frame(serialize([scored_rows(tiny_scorer, 1, "gone")])))
    damaged[20] ^= 0xFF
    (quarantine / "w-q-000000000002.seg").write_bytes(
        frame(serialize([scored_rows(tiny_scorer, 1, "kept")])) + bytes(damaged)
    )
    result = runner.invoke(app, ["lake", "requeue"])
    assert result.exit_code == 0, result.output
    outcome = {r["segment"]: r for r in json.loads(result.stdout)}
    assert outcome["w-q-000000000001"]["released"] is True
    assert outcome["w-q-000000000002"]["released"] is False
    assert [p.name for p in quarantine.glob("*.seg")] == ["w-q-000000000002.seg"]
    request_ids = set(table_rows(local_settings(tmp_path)).column("request_id").to_pylist())
    assert {"requeued", "kept"} <= request_ids
    assert "gone" not in request_ids


def test_the_lake_tools_run_in_prod_without_api_keys(lake_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """API keys are needed to serve, not to query: `lake ddl` and `lake query` work with LEADSCORE_ENV=prod."""
    monkeypatch.setenv("LEADSCORE_ENV", "prod")
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    ddl = runner.invoke(app, ["lake", "ddl"])
    assert ddl.exit_code == 0, ddl.output
    assert "`leadscore_prod`.`lead_score_prod`" in ddl.stdout
    query = runner.invoke(app, ["lake", "query", "SELECT 1 AS one", "--output", "json"])
    assert query.exit_code == 1  # the prod table does not exist here: a clear error, not a traceback
    assert "no lake table" in query.output


def test_a_stop_that_leaves_outcomes_on_their_spool_exits_with_the_backlog_status(tmp_path: Path) -> None:
    """Outcomes left on their spool (below the predictions' one) make the exit status 75, as predictions do."""
    spool = tmp_path / "spool"
    assert spool_exit_status(spool) == 0
    left = spool / OUTCOMES_SUBDIR / "w-stopped"
    left.mkdir(parents=True)
    (left / "segment-1.seg").write_bytes(frame(b"an acknowledged outcome"))
    assert spool_exit_status(spool) == EXIT_BACKLOG_LEFT == 75
    assert (left / "segment-1.seg").exists()  # counted, not consumed: the next server on the spool commits it


def test_requeue_of_the_outcomes_commits_their_quarantined_segment(lake_env: Path, tmp_path: Path) -> None:
    """`lake requeue --table outcomes` commits a segment of the outcomes' quarantine to the outcomes table."""
    settings = local_settings(tmp_path)
    load_outcomes_table(settings)  # the table a server made
    quarantine = tmp_path / "spool" / OUTCOMES_SUBDIR / "quarantine"
    quarantine.mkdir(parents=True)
    batch = outcome_batch(
        {"lead_id": ["Q1", "Q2"], "outcome": [5, None], "converted": [True, False], "occurred_at": [DAY, DAY]},
        received_at=DAY,
        request_id="requeued-outcomes",
        source="api",
    )
    (quarantine / "w-q-000000000003.seg").write_bytes(frame(outcomes_serialize([batch])))
    result = runner.invoke(app, ["lake", "requeue", "--table", "outcomes"])
    assert result.exit_code == 0, result.output
    (outcome,) = json.loads(result.stdout)
    assert (outcome["segment"], outcome["rows_committed"], outcome["released"]) == ("w-q-000000000003", 2, True)
    assert not list(quarantine.glob("*.seg"))
    assert sorted(read_outcomes(settings).column("lead_id").to_pylist()) == ["Q1", "Q2"]
