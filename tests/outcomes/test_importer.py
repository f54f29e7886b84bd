"""Reading CRM exports into outcomes: booleans and numbers as CRMs write them, the contract's checks on every row."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.errors import LeadscoreError
from leadscore.outcomes.importer import END_OF_DAY_HINT, crm_bool, end_of_day, import_outcomes, read_items
from leadscore.outcomes.table import read_outcomes
from tests.support.lake import local_settings


@pytest.mark.parametrize(
    ("cell", "value"),
    [("true", True), ("FALSE", False), ("Yes", True), ("no", False), ("1", True), ("0", False), ("", None),
     (" yes ", True), (1, True), (0, False), (True, True), (None, None), ("maybe", "maybe")],
)  # fmt: skip
def test_crm_booleans_are_read_right(cell: object, value: object) -> None:
    """true/false, yes/no, 1/0 in any case are booleans, empty is missing, anything else is left for the contract."""
    assert crm_bool(cell) == value


def test_a_parquet_export_with_native_types_imports(tmp_path: Path) -> None:
    """Parquet with int ids, int outcomes and zoned timestamps imports as the same outcomes as text would."""
    path = tmp_path / "o.parquet"
    moment = datetime(2026, 11, 1, 12, tzinfo=UTC)
    pq.write_table(pa.table({"lead_id": [7, 8], "outcome": [5, 2], "occurred_at": [moment, moment]}), path)
    items, _ = read_items(path)
    assert items[0] == {"lead_id": "7", "outcome": 5, "occurred_at": "2026-11-01T12:00:00+00:00"}
    settings = local_settings(tmp_path)
    report = import_outcomes(settings, path)
    assert (report.imported, report.rejected) == (2, ())
    assert read_outcomes(settings).column("outcome").to_pylist() == [5, 2]


def test_a_csv_in_another_encoding_imports_with_it(tmp_path: Path) -> None:
    """A Windows-1252 export is refused as UTF-8 (naming --encoding) and read with encoding="cp1252"."""
    path = tmp_path / "o.csv"
    path.write_bytes("lead_id,occurred_at,converted\nSociété-1,2026-11-01T12:00:00Z,Oui\n".encode("cp1252"))
    with pytest.raises(LeadscoreError, match="name its encoding with --encoding"):
        read_items(path)
    items, _ = read_items(path, encoding="cp1252")
    assert items[0]["lead_id"] == "Société-1"


def test_a_file_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    """No occurred_at column: a LeadscoreError naming what is missing, before anything is written."""
    path = tmp_path / "o.csv"
    path.write_text("lead_id,converted\nL1,yes\n")
    with pytest.raises(LeadscoreError, match="missing: occurred_at"):
        read_items(path)


def test_strict_imports_nothing_when_a_row_is_rejected(tmp_path: Path) -> None:
    """--strict: one bad row and no outcome is committed."""
    path = tmp_path / "o.csv"
    path.write_text("lead_id,outcome,occurred_at\nL1,4,2026-11-30T10:00:00Z\nL2,9,2026-11-30T10:00:00Z\n")
    settings = local_settings(tmp_path)
    report = import_outcomes(settings, path, strict=True)
    assert (report.imported, report.rejected_rows) == (0, 1)
    assert read_outcomes(settings).num_rows == 0


def test_a_date_alone_is_refused_with_a_hint_by_default(tmp_path: Path) -> None:
    """Without the option a date alone is the contract's error, plus the option that would read it."""
    path = tmp_path / "o.csv"
    path.write_text("lead_id,outcome,occurred_at\nL1,4,2026-11-29\n")
    report = import_outcomes(local_settings(tmp_path), path)
    assert report.imported == 0
    assert [(p.index, p.field) for p in report.rejected] == [(0, "occurred_at")]
    assert report.rejected[0].message.endswith(END_OF_DAY_HINT)


def test_a_parquet_date_column_reads_as_the_end_of_each_day(tmp_path: Path) -> None:
    """A Parquet date32 occurred_at, with the option: each day's last microsecond in UTC."""
    path = tmp_path / "o.parquet"
    pq.write_table(pa.table({"lead_id": ["L1"], "converted": [True], "occurred_at": [date(2026, 11, 1)]}), path)
    items, _ = read_items(path, end_of_day_dates=True)
    assert items[0]["occurred_at"] == "2026-11-01T23:59:59.999999+00:00"


def test_today_reads_as_now_not_as_a_future_moment() -> None:
    """Today's date is read as the moment given as now: the end of today is still to come."""
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert end_of_day("2026-12-01", now) == now.isoformat()
    assert end_of_day("2026-11-30", now) == (datetime(2026, 12, 1, tzinfo=UTC) - timedelta(microseconds=1)).isoformat()


def test_a_date_that_does_not_exist_is_left_for_the_contract() -> None:
    """2026-02-30 is no day: it stays as it was and the contract refuses it."""
    assert end_of_day("2026-02-30", datetime(2026, 12, 1, tzinfo=UTC)) == "2026-02-30"
