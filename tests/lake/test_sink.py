"""The lake sink with a local table: spool -> commits of many segments, retries, quarantine, adoption, capacity."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support.lake import duplicated, local_settings, row_counts, scored_rows, table_rows
from tests.support.waiting import Blackhole, wait_until

from leadscore.config import Settings
from leadscore.lake import sink as sink_module
from leadscore.lake.errors import SpoolFull, SpoolWriteFailed
from leadscore.lake.flush import commit_segments
from leadscore.lake.records import serialize
from leadscore.lake.sink import LakeSink
from leadscore.lake.spool import frame
from leadscore.model.bundle import Scorer


def _sink(settings: Settings) -> LakeSink:
    sink = LakeSink(settings.lake_config())
    sink.start()
    return sink


def _orphan(settings: Settings, name: str, *payloads: bytes) -> Path:
    """A spool directory left by a process that died, with one closed segment."""
    directory = settings.spool_dir / name
    directory.mkdir(parents=True)
    path = directory / "000000000001.seg"
    path.write_bytes(b"".join(payloads))
    return path


class FlakyCommits:
    """commit_segments failing `failures` times first (a store outage), then the real one."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise OSError("connection refused")
        return commit_segments(*args)


def test_recorded_rows_reach_the_table_once(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Rows recorded and flushed are in the table, each (request, lead) once, and the spool is empty."""
    settings = local_settings(tmp_path)
    sink = _sink(settings)
    asyncio.run(sink.record(scored_rows(tiny_scorer, 3, "a")))
    asyncio.run(sink.record(scored_rows(tiny_scorer, 2, "b")))
    assert sink.close(30)
    counts = row_counts(table_rows(settings))
    assert sorted(counts) == [("a", "L0"), ("a", "L1"), ("a", "L2"), ("b", "L0"), ("b", "L1")]
    assert duplicated(counts) == 0
    assert not list(settings.spool_dir.glob("w-*"))


def test_segments_closing_within_the_commit_interval_share_one_commit(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Five segments closing within one interval need at most two commits (the first may go alone, at once)."""
    settings = local_settings(tmp_path, lake_commit_interval_seconds=60.0, lake_segment_max_bytes=1024)
    sink = _sink(settings)
    for i in range(5):
        asyncio.run(sink.record(scored_rows(tiny_scorer, 2, f"r{i}")))  # each record closes a 1 KiB segment
    assert sink.close(30)
    assert sink.commits <= 2
    assert table_rows(settings).num_rows == 10


def test_commits_are_retried_until_the_store_is_back(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While commits fail the rows wait on the spool (failures counted); they arrive once the store recovers."""
    flaky = FlakyCommits(failures=3)
    monkeypatch.setattr(sink_module, "commit_segments", flaky)
    settings = local_settings(tmp_path)
    sink = _sink(settings)
    asyncio.run(sink.record(scored_rows(tiny_scorer, 4, "r")))
    assert sink.wait_idle(30)
    assert sink.status()["commit_failures"] == 3
    assert flaky.calls == 4
    assert table_rows(settings).num_rows == 4
    sink.close(5)


def test_a_stop_while_the_store_is_down_keeps_the_rows_and_says_so(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() past its deadline returns False and the rows stay on the spool, in a directory others can adopt."""
    monkeypatch.setattr(sink_module, "commit_segments", FlakyCommits(failures=10**9))
    settings = local_settings(tmp_path)
    sink = _sink(settings)
    asyncio.run(sink.record(scored_rows(tiny_scorer, 2, "r")))
    assert not sink.close(0.5)
    assert sink.status()["backlog_rows"] == 2
    assert "connection refused" in (sink.status()["last_error"] or "")
    assert len(list(settings.spool_dir.glob("w-*/*.seg"))) == 1


def test_a_commit_hung_on_the_store_is_ended_at_the_close_deadline(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A commit stuck on a store that never answers is ended (its process killed) at close's deadline."""
    store = Blackhole()
    try:
        settings = local_settings(
            tmp_path,
            lake_uri="s3://bucket/lake",
            lake_catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
            s3_endpoint_url=store.endpoint,
            s3_region="us-east-1",
            lake_request_timeout_seconds=300.0,
            lake_commit_in_subprocess=True,
        )
        sink = _sink(settings)
        asyncio.run(sink.record(scored_rows(tiny_scorer, 1, "r")))
        sink.rotate()
        wait_until(lambda: store._held, what="the committer reached the store")
        started = time.monotonic()
        assert not sink.close(1.0)
        assert time.monotonic() - started < 1.0 + 5.0 + 5.0  # the deadline, the flusher's join, the pool's end
        assert len(list(settings.spool_dir.glob("w-*/*.seg"))) == 1
    finally:
        store.close()


def test_the_committer_process_commits(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """With commits in a child process (the default), rows reach the table as in-process."""
    settings = local_settings(tmp_path, lake_commit_in_subprocess=True)
    sink = _sink(settings)
    asyncio.run(sink.record(scored_rows(tiny_scorer, 3, "child")))
    assert sink.close(60)
    assert table_rows(settings).num_rows == 3


def test_a_segment_committed_before_a_crash_is_not_committed_again(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A crash between commit and delete: the next sink adopts the segment, finds it committed, adds nothing."""
    settings = local_settings(tmp_path)
    path = _orphan(settings, "w-crashed", frame(serialize([scored_rows(tiny_scorer, 3, "once")])))
    commit_segments(settings.lake_table_config(), [("w-crashed-000000000001", str(path))])
    sink = _sink(settings)
    assert sink.wait_idle(30)
    assert sink.close(10)
    counts = row_counts(table_rows(settings))
    assert sum(counts.values()) == 3
    assert duplicated(counts) == 0
    assert not path.exists()


def test_a_damaged_segment_is_committed_as_far_as_readable_and_quarantined(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Damaged bytes mid-segment: the readable rows are committed, the file kept in quarantine with a report."""
    settings = local_settings(tmp_path)
    middle = bytearray(frame(serialize([scored_rows(tiny_scorer, 2, "lost")])))
    middle[30] ^= 0xFF
    _orphan(
        settings,
        "w-damaged",
        frame(serialize([scored_rows(tiny_scorer, 1, "before")])),
        bytes(middle),
        frame(serialize([scored_rows(tiny_scorer, 1, "after")])),
    )
    sink = _sink(settings)
    assert sink.wait_idle(30)
    assert sink.status()["quarantined_segments"] == 1
    sink.close(10)
    assert sorted({r for r, _ in row_counts(table_rows(settings))}) == ["after", "before"]
    kept = list((settings.spool_dir / "quarantine").iterdir())
    assert sorted(p.suffix for p in kept) == [".json", ".seg"]


def test_a_poison_segment_at_start_is_quarantined_and_the_sink_starts(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A segment whose records this version cannot read does not stop start-up; it waits in quarantine."""
    settings = local_settings(tmp_path)
    future = b'{"v": 99, "groups": []}'
    _orphan(settings, "w-poison", frame(len(future).to_bytes(4, "little") + future))
    sink = _sink(settings)
    asyncio.run(sink.record(scored_rows(tiny_scorer, 1, "fine")))
    assert sink.wait_idle(30)
    assert sink.status()["quarantined_segments"] == 1
    assert sink.close(10)
    assert table_rows(settings).num_rows == 1


def test_a_live_sink_adopts_the_spool_of_a_process_that_died(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """An unlocked spool directory appearing while the sink runs is adopted and committed."""
    settings = local_settings(tmp_path, lake_adopt_interval_seconds=0.2)
    sink = _sink(settings)
    path = _orphan(settings, "w-died-later", frame(serialize([scored_rows(tiny_scorer, 2, "adopted")])))
    wait_until(lambda: not path.exists(), what="the orphan's segment committed and removed")
    assert sink.close(10)
    assert table_rows(settings).num_rows == 2


def test_full_spool_refuses_new_work(tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the spool cap the capacity check raises SpoolFull with a retry hint, and readiness is false."""
    monkeypatch.setattr(sink_module, "commit_segments", FlakyCommits(failures=10**9))
    settings = local_settings(tmp_path, lake_spool_max_bytes=1024)
    sink = _sink(settings)
    asyncio.run(sink.record(scored_rows(tiny_scorer, 20, "big")))
    with pytest.raises(SpoolFull) as caught:
        sink.check_capacity()
    assert caught.value.retry_after > 0
    assert not sink.ready()
    sink.close(0.2)


def test_a_failed_spool_write_is_refused_and_turns_readiness_off_until_writes_succeed(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ENOSPC write raises SpoolWriteFailed (nothing acknowledged); readiness is off until the disk takes writes."""
    settings = local_settings(tmp_path)
    sink = _sink(settings)
    import leadscore.lake.spool as spool_module  # noqa: PLC0415

    full = threading.Event()
    original = spool_module.os.write

    def write(fd: int, data: bytes) -> int:
        if full.is_set():
            raise OSError(28, "No space left on device")
        return original(fd, data)

    monkeypatch.setattr(spool_module.os, "write", write)
    full.set()
    with pytest.raises(SpoolWriteFailed):
        asyncio.run(sink.record(scored_rows(tiny_scorer, 1, "refused")))
    assert not sink.ready()
    full.clear()
    sink._last_probe = 0.0
    assert sink.ready()
    asyncio.run(sink.record(scored_rows(tiny_scorer, 1, "kept")))
    assert sink.close(30)
    assert [r for r, _ in row_counts(table_rows(settings))] == ["kept"]


def test_async_mode_acknowledges_only_written_rows(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In async mode a record() that could not be written raises too: nothing unwritten is acknowledged."""
    import leadscore.lake.spool as spool_module  # noqa: PLC0415

    settings = local_settings(tmp_path, lake_durability="async")
    sink = _sink(settings)

    def enospc(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", enospc)
    with pytest.raises(SpoolWriteFailed):
        asyncio.run(sink.record(scored_rows(tiny_scorer, 1, "refused")))
    monkeypatch.undo()
    sink.close(10)
