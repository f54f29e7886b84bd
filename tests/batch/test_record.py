"""Where a lake row came from: the API's rows are online, a batch run's rows carry its run id."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from leadscore.batch.record import (
    ROWS_PROPERTY,
    RUN_PROPERTY,
    Recorder,
    RunConflict,
    check_run_id,
    lake_rows,
    new_run_id,
)
from leadscore.errors import LeadscoreError
from leadscore.lake._compat import ROW_GROUP_ROWS
from leadscore.lake.records import deserialize, serialize, to_record_batch
from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.lake.table import expire_snapshots, load_table
from tests.support.lake import local_settings, scored_rows, table_rows
from tests.support.waiting import wait_until


def test_online_rows_are_online(tiny_scorer):
    """Rows the API records have source=online and no run id, also after a trip through the spool."""
    rows = scored_rows(tiny_scorer, 3, "req-1")
    for batch in (to_record_batch([rows]), deserialize(serialize([rows]))):
        assert batch.column("source").to_pylist() == ["online"] * 3
        assert batch.column("run_id").to_pylist() == [None] * 3


def _scored(n: int, refused: set[int]) -> pa.Table:
    """The core's output for `n` rows (as its contract lays it out), rows in `refused` rejected."""
    at = datetime(2026, 6, 1, tzinfo=UTC)
    return pa.table(
        {
            "row": pa.array(range(10, 10 + n), pa.int64()),
            "lead_id": [f"L{i}" for i in range(n)],
            "score": pa.array([None if i in refused else 3 for i in range(n)], pa.int8()),
            "confidence": [None if i in refused else 0.5 for i in range(n)],
            "model_version": ["m-1"] * n,
            "scored_at": pa.array([at] * n, pa.timestamp("us", "UTC")),
            "error_field": [("website_sessions" if i in refused else None) for i in range(n)],
            "error_message": [("bad" if i in refused else None) for i in range(n)],
        }
    )


def test_batch_lake_rows_hold_the_scored_rows_of_the_run():
    """A chunk's lake rows: scored rows only, source=batch, the run id, the raw inputs typed as the lake's."""
    typed = pa.record_batch(
        {
            "existing_customer": ["No", "TRUE", None],
            "last_campaign_interaction": ["2026-05-01T10:00:00", "2026-05-01T10:00:00+02:00", None],
            "website_sessions": pa.array([1, 2, 3], pa.int64()),
        }
    )
    rows = lake_rows(typed, _scored(3, refused={2}), "run-7", "dev")
    assert rows.schema == ARROW_SCHEMA
    assert rows["source"].to_pylist() == ["batch", "batch"]
    assert rows["run_id"].to_pylist() == ["run-7", "run-7"]
    assert rows["lead_index"].to_pylist() == [10, 11]
    assert rows["raw_existing_customer"].to_pylist() == [False, True]
    assert rows["raw_last_campaign_interaction"].to_pylist() == [
        datetime(2026, 5, 1, 10, tzinfo=UTC).replace(tzinfo=None),
        datetime(2026, 5, 1, 8, tzinfo=UTC).replace(tzinfo=None),
    ]
    assert rows["features_used"].to_pylist() == [3, 3]
    assert rows["year"].to_pylist() == [2026, 2026]


def test_other_chunk_boundaries_for_a_recorded_run_are_refused(tmp_path):
    """Rows of a run recorded with other chunk boundaries cannot be matched: refused, not recorded twice."""
    recorder = Recorder(local_settings(tmp_path).lake_table_config(), "run-8")
    rows = lake_rows(
        pa.record_batch({"website_sessions": pa.array([1, 2], pa.int64())}), _scored(2, set()), "run-8", "dev"
    )
    recorder.add(0, 2, rows)
    recorder.add(0, 2, rows)
    with pytest.raises(RunConflict, match="part of input rows"):
        recorder.add(1, 3, rows)
    assert table_rows(local_settings(tmp_path)).num_rows == 2
    assert (recorder.rows, recorder.skipped_rows) == (2, 2)


def _chunk_rows(n: int) -> pa.Table:
    return lake_rows(pa.record_batch({"form_fills": pa.array(range(n), pa.int64())}), _scored(n, set()), "run-7", "dev")


def _run_snapshots(config) -> list[str]:
    """The input rows each snapshot of run-7 names, oldest first."""
    return [
        s.summary.additional_properties[ROWS_PROPERTY]
        for s in load_table(config).snapshots()
        if s.summary is not None and s.summary.additional_properties.get(RUN_PROPERTY) == "run-7"
    ]


def test_chunks_share_a_commit_until_it_spans_the_commit_rows(tmp_path):
    """Chunks of 2 rows with commits of 4: two chunks per snapshot, and `finish` commits the short last one."""
    config = local_settings(tmp_path).lake_table_config()
    recorder = Recorder(config, "run-7", commit_rows=4)
    for start in (0, 2, 4, 6, 8):
        recorder.add(start, start + 2, _chunk_rows(2))
    assert _run_snapshots(config) == ["0-4", "4-8"]
    recorder.finish()
    assert _run_snapshots(config) == ["0-4", "4-8", "8-10"]
    assert table_rows(local_settings(tmp_path)).num_rows == recorder.rows == 10


def test_a_rerun_in_other_chunks_adds_nothing_recorded(tmp_path):
    """A run recorded in 4-row commits, rerun with the same id in 2-row chunks: every chunk is skipped."""
    config = local_settings(tmp_path).lake_table_config()
    first = Recorder(config, "run-7", commit_rows=4)
    for start in (0, 4):
        first.add(start, start + 4, _chunk_rows(4))
    again = Recorder(config, "run-7", commit_rows=4)
    for start in (0, 2, 4, 6):
        again.add(start, start + 2, _chunk_rows(2))
    again.finish()
    assert (again.rows, again.skipped_rows) == (0, 8)
    assert table_rows(local_settings(tmp_path)).num_rows == 8


def test_a_span_whose_every_row_was_rejected_is_recorded_without_data(tmp_path):
    """Input rows all rejected still become the run's: no data file, and a rerun of them adds nothing."""
    settings = local_settings(tmp_path)
    config = settings.lake_table_config()
    recorder = Recorder(config, "run-7")
    recorder.add(0, 3, _chunk_rows(0))
    recorder.finish()
    assert recorder.rows == 0
    assert not list((tmp_path / "lake").rglob("*.parquet"))
    again = Recorder(config, "run-7")
    again.add(0, 3, _chunk_rows(3))
    again.finish()
    assert (again.rows, again.skipped_rows) == (0, 3)
    assert table_rows(settings).num_rows == 0


def test_discarded_rows_leave_no_commit_and_no_file(tmp_path):
    """Rows added and then discarded (a failed run) are in no snapshot, and their data files are deleted."""
    settings = local_settings(tmp_path)
    recorder = Recorder(settings.lake_table_config(), "run-7", commit_rows=10 * ROW_GROUP_ROWS)
    recorder.add(0, ROW_GROUP_ROWS, _chunk_rows(ROW_GROUP_ROWS))  # a whole row group: its file is being written
    assert list((tmp_path / "lake").rglob("*.parquet"))
    recorder.discard()
    recorder.finish()
    assert table_rows(settings).num_rows == 0
    assert not list((tmp_path / "lake").rglob("*.parquet"))


def test_the_record_of_a_run_outlives_snapshot_expiry(tmp_path):
    """Once the run's snapshots are expired, the same run id still adds nothing (the record is a table property)."""
    config = local_settings(tmp_path).lake_table_config()
    rows = lake_rows(pa.record_batch({"form_fills": pa.array([1, 2], pa.int64())}), _scored(2, set()), "run-9", "dev")
    first = Recorder(config, "run-9")
    first.add(0, 2, rows)
    first.add(2, 4, rows)
    table = load_table(config)
    table.append(rows)  # a later commit (online traffic), then every earlier snapshot expired
    wait_until(lambda: time.time() * 1000 > table.snapshots()[-1].timestamp_ms, what="a later millisecond")
    expire_snapshots(table, 0)
    assert len(load_table(config).snapshots()) == 1
    again = Recorder(config, "run-9")
    again.add(0, 2, rows)
    again.add(2, 4, rows)
    assert (again.rows, again.skipped_rows) == (0, 4)


def test_new_run_ids_are_usable():
    """A generated run id passes the check."""
    assert check_run_id(new_run_id(datetime.now(UTC))).startswith("batch-")


@pytest.mark.parametrize("bad", ["a b", "x/y", ""])
def test_unusable_run_ids_are_refused(bad):
    """A run id with spaces or slashes, or an empty one, is refused."""
    with pytest.raises(LeadscoreError, match="run id"):
        check_run_id(bad)
