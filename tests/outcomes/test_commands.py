"""`leadscore outcomes import`: CRM CSVs in, rejects named by row and field, exit codes like the other commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.config import Settings
from leadscore.outcomes.table import read_outcomes

CRM_CSV = """Lead_ID,Converted,Occurred_At,Stage,Owner
L1,Yes,2026-11-30T10:00:00Z,closed_won,ann
L2,no,2026-11-30T10:00:00+01:00,,bob
L3,1,2026-11-29T08:00:00Z,closed_won,bob
L4,0,2026-11-29T08:00:00Z,,bob
L5,,2026-11-29T08:00:00Z,open,bob
L6,maybe,2026-11-29,lost,bob
L1,YES,2026-11-30T10:00:00Z,closed_won,ann
"""


@pytest.fixture
def lake_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a local lake under tmp_path."""
    return {"LEADSCORE_LAKE_URI": str(tmp_path / "lake"), "LEADSCORE_SPOOL_DIR": str(tmp_path / "spool")}


def test_a_crm_csv_imports_its_booleans_and_names_its_rejects(tmp_path: Path, lake_env: dict[str, str]) -> None:
    """Yes/no/1/0 are read right; the empty and the unreadable rows are named by row and field; exit status 1."""
    path = tmp_path / "crm.csv"
    path.write_text(CRM_CSV)
    result = CliRunner().invoke(app, ["outcomes", "import", str(path)], env=lake_env)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "row 5: give outcome (1..5), converted (true/false) or both",
        "row 6, converted: Input should be a valid boolean",
        "row 6, occurred_at: Input should be an ISO 8601 date-time string with a zone (Z or +hh:mm); "
        "a date alone: --date-as-end-of-day reads it as the end of that day (UTC)",
    ]
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["imported"], summary["duplicates"], summary["rejected_rows"]) == (7, 4, 1, 2)
    assert summary["ignored_columns"] == ["Owner"]
    rows = read_outcomes(Settings(lake_uri=lake_env["LEADSCORE_LAKE_URI"]))
    assert dict(zip(rows["lead_id"].to_pylist(), rows["converted"].to_pylist(), strict=True)) == {
        "L1": True, "L2": False, "L3": True, "L4": False,
    }  # fmt: skip
    assert set(rows["source"].to_pylist()) == {"import"}


def test_importing_the_same_file_twice_counts_each_outcome_once(tmp_path: Path, lake_env: dict[str, str]) -> None:
    """A re-run import stores its rows again, but readers see each outcome once."""
    path = tmp_path / "crm.csv"
    path.write_text("lead_id,outcome,occurred_at\nL1,4,2026-11-30T10:00:00Z\n")
    for _ in range(2):
        assert CliRunner().invoke(app, ["outcomes", "import", str(path)], env=lake_env).exit_code == 0
    assert read_outcomes(Settings(lake_uri=lake_env["LEADSCORE_LAKE_URI"])).num_rows == 1


def test_a_missing_file_is_a_usage_error(tmp_path: Path, lake_env: dict[str, str]) -> None:
    """Exit status 2 and a message naming the file."""
    result = CliRunner().invoke(app, ["outcomes", "import", str(tmp_path / "nope.csv")], env=lake_env)
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_close_dates_import_as_the_end_of_their_day(tmp_path: Path, lake_env: dict[str, str]) -> None:
    """--date-as-end-of-day: a CRM's close date is imported as the last moment of that day, UTC; exit 0."""
    path = tmp_path / "closed.csv"
    path.write_text("lead_id,converted,occurred_at\nL1,true,2026-11-29\nL2,false,2026-11-30T09:00:00Z\n")
    result = CliRunner().invoke(app, ["outcomes", "import", "--date-as-end-of-day", str(path)], env=lake_env)
    assert result.exit_code == 0, result.output
    rows = read_outcomes(Settings(lake_uri=lake_env["LEADSCORE_LAKE_URI"])).sort_by("lead_id")
    assert [t.isoformat() for t in rows["occurred_at"].to_pylist()] == [  # the table's timestamps are UTC
        "2026-11-29T23:59:59.999999",
        "2026-11-30T09:00:00",
    ]
