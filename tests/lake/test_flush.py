"""One commit of spool segments: readable rows in, damaged parts reported, committed segments skipped."""

from __future__ import annotations

from pathlib import Path

from tests.support.lake import local_settings, row_counts, scored_rows, table_rows

from leadscore.lake.flush import commit_segments
from leadscore.lake.records import serialize
from leadscore.lake.spool import frame
from leadscore.lake.table import TableConfig
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
