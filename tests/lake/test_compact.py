"""Compaction (one snapshot replaces exactly the files it read) and forgetting a lead."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from tests.support.lake import duplicated, live_file_rows, local_settings, row_counts, scored_rows, table_rows

from leadscore.lake.compact import CompactionConflict, compact_day, forget
from leadscore.lake.flush import commit_segments
from leadscore.lake.query import run_query
from leadscore.lake.records import serialize
from leadscore.lake.spool import frame
from leadscore.lake.table import TableConfig, live_data_files, load_table
from leadscore.model.bundle import Scorer

DAY = date(2026, 3, 4)


def _commit(config: TableConfig, tmp_path: Path, scorer: Scorer, segment_id: str, n: int = 2) -> Path:
    """Commit a segment of `n` rows scored on DAY; returns the segment file (kept, as after a crash)."""
    path = tmp_path / "segments" / f"{segment_id}.seg"
    path.parent.mkdir(parents=True, exist_ok=True)
    at = datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC)
    path.write_bytes(frame(serialize([scored_rows(scorer, n, segment_id, at)])))
    commit_segments(config, [(segment_id, str(path))])
    return path


def _queried(config: TableConfig) -> int:
    _, rows = run_query(load_table(config, create=False), config, f"SELECT count(*) FROM {config.name}")  # noqa: S608 - our table name
    return int(rows[0][0])


def test_compaction_merges_a_day_into_one_file_in_one_snapshot(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Three files of a day become one; the rows are the same; the change is one snapshot."""
    config = local_settings(tmp_path).lake_table_config()
    for i in range(3):
        _commit(config, tmp_path, tiny_scorer, f"w-a-{i}")
    table = load_table(config)
    before = len(table.snapshots())
    result = compact_day(table, DAY)
    assert (result.input_files, result.rows, result.output_files) == (3, 6, 1)
    assert len(load_table(config).snapshots()) == before + 1
    assert len(live_data_files(load_table(config))) == 1
    assert duplicated(row_counts(table_rows(config))) == 0


def test_nested_compactions_with_retried_uploads_duplicate_nothing(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """compact, new file, compact again, then every old segment retried: each row is there once, however read."""
    config = local_settings(tmp_path).lake_table_config()
    first = _commit(config, tmp_path, tiny_scorer, "w-a-1")
    second = _commit(config, tmp_path, tiny_scorer, "w-a-2")
    compact_day(load_table(config), DAY)
    third = _commit(config, tmp_path, tiny_scorer, "w-a-3")
    compact_day(load_table(config), DAY)
    for path in (first, second, third):
        report = commit_segments(config, [(path.stem, str(path))])
        assert report.segments[0].already_committed
    assert duplicated(row_counts(table_rows(config))) == 0
    assert duplicated(row_counts(live_file_rows(config))) == 0
    assert _queried(config) == 6


def test_two_compactions_of_one_day_cannot_both_win(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Two compactions planned on the same snapshot: the second is refused, and no row is kept twice."""
    config = local_settings(tmp_path).lake_table_config()
    for i in range(2):
        _commit(config, tmp_path, tiny_scorer, f"w-a-{i}")
    one, two = load_table(config), load_table(config)
    compact_day(one, DAY)
    with pytest.raises(CompactionConflict):
        compact_day(two, DAY)
    assert duplicated(row_counts(live_file_rows(config))) == 0
    assert _queried(config) == 4


def test_rows_appended_during_a_compaction_are_kept(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A commit landing between a compaction's plan and its commit is neither lost nor merged twice."""
    config = local_settings(tmp_path).lake_table_config()
    for i in range(2):
        _commit(config, tmp_path, tiny_scorer, f"w-a-{i}")
    planned = load_table(config)  # the compaction's view: two files
    _commit(config, tmp_path, tiny_scorer, "w-late")  # lands before the compaction commits
    compact_day(planned, DAY)
    counts = row_counts(table_rows(config))
    assert sum(counts.values()) == 6
    assert duplicated(counts) == 0


def test_forget_deletes_every_row_of_a_lead_and_counts_them(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Forgetting a lead id removes its rows (in every request) and nothing else, and says how many."""
    config = local_settings(tmp_path).lake_table_config()
    _commit(config, tmp_path, tiny_scorer, "w-a-1", n=3)  # leads L0, L1, L2
    _commit(config, tmp_path, tiny_scorer, "w-a-2", n=2)  # leads L0, L1
    deleted = forget(load_table(config), ["L1"], [])
    assert deleted == 2
    remaining: pa.Table = table_rows(config)
    assert sorted(remaining.column("lead_id").to_pylist()) == ["L0", "L0", "L2"]


def test_forget_by_request_id(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Forgetting a request id removes the rows of that request only."""
    config = local_settings(tmp_path).lake_table_config()
    _commit(config, tmp_path, tiny_scorer, "w-a-1", n=2)
    _commit(config, tmp_path, tiny_scorer, "w-a-2", n=2)
    assert forget(load_table(config), [], ["w-a-1"]) == 2
    assert set(table_rows(config).column("request_id").to_pylist()) == {"w-a-2"}
