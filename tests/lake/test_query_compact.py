"""`lake query` (DuckDB over the lake) and `lake compact` (merge a day's files, nothing lost or doubled)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns
from leadscore.lake.compact import compact_day
from leadscore.lake.query import run_query, visible_keys
from leadscore.lake.records import RowGroup
from leadscore.lake.sink import LakeConfig, LakeSink
from leadscore.lake.store import Store, open_store
from leadscore.model.bundle import Scorer
from leadscore.scoring import score_columns

DAY = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _fill(tmp_path: Path, scorer: Scorer, files: int, leads: int = 2) -> Store:
    """A local lake with `files` Parquet files on DAY (one flush each)."""
    store = open_store(str(tmp_path / "lake"))
    for f in range(files):
        sink = LakeSink(LakeConfig(spool_dir=tmp_path / f"spool-{f}"), store)
        sink.start()
        payload = ScoreRequest.model_validate({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L{i}"} for i in range(leads)]})
        columns = to_columns(payload.leads)
        batch = score_columns(scorer, columns, leads, DAY)
        request_id = "load-test-1-1" if f == 0 else f"req-{f}"
        asyncio.run(sink.record(RowGroup(request_id, batch, columns, 1.0, is_test=f == 0, environment="dev")))
        sink.close(10)
    return store


def test_query_counts_rows_by_partition(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """SQL over the lake sees every row, with year/month/day columns from the paths."""
    store = _fill(tmp_path, tiny_scorer, files=3)
    names, rows = run_query(
        store, "lead_score_dev", "SELECT year, month, day, count(*) AS n FROM lead_score_dev GROUP BY ALL"
    )
    assert names == ["year", "month", "day", "n"]
    assert rows == [(2026, 6, 1, 6)]


def test_query_can_exclude_test_traffic(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Analysts filter smoke and load-test rows out with is_test."""
    store = _fill(tmp_path, tiny_scorer, files=2)
    _, rows = run_query(store, "t", "SELECT count(*) FROM t WHERE NOT is_test")
    assert rows == [(2,)]


def test_compaction_merges_a_day_without_losing_or_doubling_rows(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """After compaction the day is one file holding exactly the same rows."""
    store = _fill(tmp_path, tiny_scorer, files=4)
    query = "SELECT request_id, lead_id FROM t ORDER BY 1, 2"
    before = run_query(store, "t", query)[1]
    result = compact_day(store, date(2026, 6, 1))
    assert result.input_files == 4
    assert result.rows == 8
    assert len(store.list()) == 1
    assert run_query(store, "t", query)[1] == before


def test_half_finished_compaction_is_invisible_and_completed_on_rerun(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """If compaction stops after writing its output, readers skip the replaced inputs; a rerun deletes them."""
    store = _fill(tmp_path, tiny_scorer, files=3)
    inputs = store.list()
    original_delete = store.delete
    store.delete = lambda key: None  # type: ignore[method-assign]  # the crash: nothing gets deleted
    compact_day(store, date(2026, 6, 1))
    store.delete = original_delete  # type: ignore[method-assign]
    assert len(store.list()) == 4
    assert len(visible_keys(store)) == 1
    assert run_query(store, "t", "SELECT count(*) FROM t")[1] == [(6,)]
    compact_day(store, date(2026, 6, 1))
    assert all(k not in store.list() for k in inputs)
    assert run_query(store, "t", "SELECT count(*) FROM t")[1] == [(6,)]


def test_compacting_a_day_with_one_file_changes_nothing(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A day already in one file is left alone."""
    store = _fill(tmp_path, tiny_scorer, files=1)
    before = store.list()
    assert compact_day(store, date(2026, 6, 1)).output_key is None
    assert store.list() == before
