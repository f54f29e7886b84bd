"""Reading CRM exports into outcomes: booleans and numbers as CRMs write them, the contract's checks on every row."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.errors import LeadscoreError
from leadscore.outcomes.importer import crm_bool, import_outcomes, read_items
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
