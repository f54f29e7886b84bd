"""One commit of spool segments: readable rows in, damaged parts reported, committed segments skipped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.support.lake import local_settings, row_counts, scored_rows, table_rows

from leadscore.lake import _compat, flush
from leadscore.lake.flush import commit_segments
from leadscore.lake.records import serialize
from leadscore.lake.spool import frame
from leadscore.lake.table import TableConfig, committed_segments, live_data_files, load_table
from leadscore.model.bundle import Scorer


def _segment(path: Path, *payloads: bytes) -> tuple[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(payloads))
    return path.stem, str(path)


def _config(tmp_path: Path) -> TableConfig:
    return local_settings(tmp_path).lake_table_config()


def test_segments_commit_in_one_snapshot_named_by_them(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Two segments become one snapshot holding all their rows."""
    config = _config(tmp_path)
    a = _segment(tmp_path / "s" / "w-a-1.seg", frame(serialize([scored_rows(tiny_scorer, 2, "a")])))
    b = _segment(tmp_path / "s" / "w-b-1.seg", frame(serialize([scored_rows(tiny_scorer, 3, "b")])))
    report = commit_segments(config, [a, b])
    assert report.rows == 5
    assert report.snapshot_id is not None
    assert sorted(row_counts(table_rows(config)).values()) == [1] * 5


def test_a_segment_committed_before_is_skipped(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Committing the same segment again (a retry after a crash) adds nothing."""
    config = _config(tmp_path)
    seg = _segment(tmp_path / "s" / "w-a-1.seg", frame(serialize([scored_rows(tiny_scorer, 2, "a")])))
    commit_segments(config, [seg])
    again = commit_segments(config, [seg])
    assert again.segments[0].already_committed
    assert again.rows == 0
    assert again.snapshot_id is None
    assert table_rows(config).num_rows == 2


def test_damaged_bytes_lose_only_their_record(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A flipped byte in a middle record: the records around it are committed and the damage is reported."""
    config = _config(tmp_path)
    middle = bytearray(frame(serialize([scored_rows(tiny_scorer, 2, "middle")])))
    middle[len(middle) // 2] ^= 0xFF
    seg = _segment(
        tmp_path / "s" / "w-a-1.seg",
        frame(serialize([scored_rows(tiny_scorer, 1, "first")])),
        bytes(middle),
        frame(serialize([scored_rows(tiny_scorer, 1, "last")])),
    )
    report = commit_segments(config, [seg]).segments[0]
    assert report.rows == 2
    assert report.bad_bytes == len(middle)
    assert report.faulty
    assert sorted({r for r, _ in row_counts(table_rows(config))}) == ["first", "last"]


def test_a_record_this_version_cannot_read_is_reported_not_committed(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A segment of unknown record versions adds no rows, is named by no snapshot, and says why."""
    config = _config(tmp_path)
    future = b'{"v": 99, "groups": []}'
    seg = _segment(tmp_path / "s" / "w-a-1.seg", frame(len(future).to_bytes(4, "little") + future))
    report = commit_segments(config, [seg])
    (outcome,) = report.segments
    assert (outcome.rows, outcome.bad_records) == (0, 1)
    assert "unsupported spool record version" in (outcome.error or "")
    assert report.snapshot_id is None


def test_a_commit_of_many_chunks_is_one_snapshot_of_every_row(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Converted and written a chunk at a time, many segments still make one snapshot naming them all."""
    monkeypatch.setattr(flush, "CHUNK_ROWS", 4)
    monkeypatch.setattr(_compat, "ROW_GROUP_ROWS", 10)
    config = _config(tmp_path)
    segments = [
        _segment(
            tmp_path / "s" / f"w-a-{s}.seg",
            *(frame(serialize([scored_rows(tiny_scorer, 3, f"r{s}-{g}")])) for g in range(4)),
        )
        for s in range(5)
    ]
    report = commit_segments(config, segments)
    table = load_table(config)
    assert report.rows == 60
    assert len(table.snapshots()) == 1
    assert committed_segments(table) == {segment_id for segment_id, _ in segments}
    assert sorted(row_counts(table_rows(config)).values()) == [1] * 60


def test_a_commit_writes_one_file_per_partition_in_bounded_row_groups(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of two days spread over chunks land in one file per day, each in row groups of ROW_GROUP_ROWS."""
    monkeypatch.setattr(flush, "CHUNK_ROWS", 4)
    monkeypatch.setattr(_compat, "ROW_GROUP_ROWS", 10)
    config = _config(tmp_path)
    days = (datetime(2026, 11, 30, 23, 59, tzinfo=UTC), datetime(2026, 12, 1, 0, 1, tzinfo=UTC))
    records = [frame(serialize([scored_rows(tiny_scorer, 3, f"r{i}", at=days[i % 2])])) for i in range(10)]
    commit_segments(config, [_segment(tmp_path / "s" / "w-a-1.seg", *records)])
    files = live_data_files(load_table(config))
    assert sorted(Path(f).parent.name for f in files) == ["day=1", "day=30"]
    for uri in files:
        metadata = pq.ParquetFile(urlparse(uri).path).metadata
        assert metadata.num_rows == 15
        assert max(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)) <= 12


def test_a_commit_that_cannot_be_written_leaves_no_files(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store failing halfway through writing the data files fails the commit and deletes what was written."""
    monkeypatch.setattr(flush, "CHUNK_ROWS", 4)
    monkeypatch.setattr(_compat, "ROW_GROUP_ROWS", 5)
    config = _config(tmp_path)
    records = [frame(serialize([scored_rows(tiny_scorer, 3, f"r{i}")])) for i in range(6)]  # 3 chunks
    data = tmp_path / "lake" / "data"
    real_write = _compat.StreamingDataFiles.write
    calls = 0

    def failing_write(self: _compat.StreamingDataFiles, batch: pa.RecordBatch) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            assert list(data.rglob("*.parquet")), "two chunks are in a file by now"
            raise OSError("the store stopped answering")
        real_write(self, batch)

    monkeypatch.setattr(_compat.StreamingDataFiles, "write", failing_write)
    with pytest.raises(OSError, match="stopped answering"):
        commit_segments(config, [_segment(tmp_path / "s" / "w-a-1.seg", *records)])
    assert not list(data.rglob("*.parquet"))
    assert load_table(config).current_snapshot() is None
