"""The spool: framing, torn tails, damaged records, group commit, write failures, orphan recovery."""

from __future__ import annotations

import threading
from concurrent.futures import wait
from pathlib import Path

import pytest

from leadscore.lake.spool import (
    Backlog,
    ClosedSegment,
    Spool,
    SpoolDirectory,
    claim_orphans,
    frame,
    leftover_segments,
    read_segment,
    remove_stale_files,
    seal_open_segments,
)


def _spool(root: Path, closed: list[ClosedSegment], **kwargs: object) -> Spool[bytes]:
    options: dict[str, object] = {"segment_max_bytes": 1 << 20, "segment_max_age_seconds": 60.0, **kwargs}
    return Spool(root, b"".join, closed.append, Backlog(), **options)  # type: ignore[arg-type]


def test_read_segment_returns_every_intact_record(tmp_path: Path) -> None:
    """Framed records read back in order and nothing is reported torn."""
    path = tmp_path / "s.seg"
    path.write_bytes(frame(b"one") + frame(b"two"))
    read = read_segment(path)
    assert read.records == [b"one", b"two"]
    assert read.torn_bytes == 0


def test_read_segment_drops_a_torn_last_record(tmp_path: Path) -> None:
    """A record cut short by a crash is dropped, never half-read."""
    path = tmp_path / "s.seg"
    data = frame(b"one") + frame(b"two-is-longer")
    path.write_bytes(data[:-3])
    read = read_segment(path)
    assert read.records == [b"one"]
    assert read.torn_bytes == len(frame(b"two-is-longer")) - 3


def test_read_segment_treats_a_bad_last_record_as_torn(tmp_path: Path) -> None:
    """A last record whose bytes do not match its CRC is a torn tail, not a readable record."""
    path = tmp_path / "s.seg"
    bad = bytearray(frame(b"payload"))
    bad[-1] ^= 0xFF
    path.write_bytes(frame(b"good") + bytes(bad))
    read = read_segment(path)
    assert read.records == [b"good"]
    assert read.torn_bytes == len(bad)
    assert read.bad_bytes == 0


@pytest.mark.parametrize("flip", [0, 5, 11, 14])
def test_read_segment_resumes_after_a_damaged_middle_record(tmp_path: Path, flip: int) -> None:
    """One flipped byte in a middle record (header or payload) loses that record only; the rest are read."""
    middle = bytearray(frame(b"middle-record"))
    middle[flip] ^= 0xFF
    path = tmp_path / "s.seg"
    path.write_bytes(frame(b"first") + bytes(middle) + frame(b"third") + frame(b"fourth"))
    read = read_segment(path)
    assert read.records == [b"first", b"third", b"fourth"]
    assert read.bad_bytes == len(middle)
    assert read.torn_bytes == 0


def test_read_segment_skips_garbage_between_records(tmp_path: Path) -> None:
    """Bytes that are no frame at all (even containing the magic) are counted as damage, not read."""
    path = tmp_path / "s.seg"
    garbage = b"LSR1 not a frame \x00\x01"
    path.write_bytes(frame(b"a") + garbage + frame(b"b"))
    read = read_segment(path)
    assert read.records == [b"a", b"b"]
    assert read.bad_bytes == len(garbage)


def test_concurrent_appends_share_fsyncs_and_all_complete(tmp_path: Path) -> None:
    """Appends from many threads all resolve, and fewer records than appends are written (group commit)."""
    closed: list[ClosedSegment] = []
    spool = _spool(tmp_path, closed)
    futures = []
    lock = threading.Lock()

    def send() -> None:
        for i in range(50):
            future = spool.append(f"{i};".encode(), rows=1)
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done, _ = wait(futures, timeout=30)
    assert len(done) == 400
    assert all(f.exception() is None for f in futures)
    spool.close()
    assert len(closed) == 1
    records = read_segment(closed[0].path).records
    assert sum(bytes(r).count(b";") for r in records) == 400
    assert len(records) < 400


def test_segment_closes_at_its_size_limit(tmp_path: Path) -> None:
    """A segment is closed and handed on once it passes its size limit."""
    closed: list[ClosedSegment] = []
    spool = _spool(tmp_path, closed, segment_max_bytes=100)
    for _ in range(3):
        spool.append(b"x" * 120, rows=1).result(timeout=10)
    spool.close()
    assert len(closed) == 3
    assert all(c.path.suffix == ".seg" for c in closed)


def test_segment_closes_at_its_age_limit(tmp_path: Path) -> None:
    """A segment older than its age limit is closed even without more writes."""
    closed: list[ClosedSegment] = []
    spool = _spool(tmp_path, closed, segment_max_age_seconds=0.2)
    spool.append(b"row", rows=1).result(timeout=10)
    deadline = threading.Event()
    for _ in range(50):
        if closed:
            break
        deadline.wait(0.1)
    assert len(closed) == 1
    spool.close()


def test_write_failure_reaches_the_waiting_caller(tmp_path: Path) -> None:
    """When the serializer (or disk) fails, the append's future carries the error instead of succeeding."""

    def broken(_: list[bytes]) -> bytes:
        raise OSError(28, "No space left on device")

    spool: Spool[bytes] = Spool(tmp_path, broken, lambda _: None, Backlog(), 1 << 20, 60.0)
    with pytest.raises(OSError, match="No space"):
        spool.append(b"x", rows=1).result(timeout=10)
    spool.close()


def test_a_failed_write_is_cut_off_and_marks_the_spool_until_a_write_succeeds(tmp_path: Path) -> None:
    """After a write fails the segment holds only whole records, write_error is set, and the next write clears it."""
    fail = threading.Event()

    def serialize(items: list[bytes]) -> bytes:
        if fail.is_set():
            raise OSError(28, "No space left on device")
        return b"".join(items)

    closed: list[ClosedSegment] = []
    spool: Spool[bytes] = Spool(tmp_path, serialize, closed.append, Backlog(), 1 << 20, 60.0)
    spool.append(b"one", rows=1).result(timeout=10)
    fail.set()
    with pytest.raises(OSError, match="No space"):
        spool.append(b"two", rows=1).result(timeout=10)
    assert spool.write_error is not None
    fail.clear()
    spool.append(b"three", rows=1).result(timeout=10)
    assert spool.write_error is None
    spool.close()
    assert read_segment(closed[0].path).records == [b"one", b"three"]


def test_probe_clears_the_write_error_once_the_disk_takes_writes(tmp_path: Path) -> None:
    """probe() writes and removes a file beside the segments; success clears write_error, leaves nothing."""
    spool = _spool(tmp_path, [])
    spool.write_error = OSError(28, "No space left on device")
    assert spool.probe()
    assert spool.write_error is None
    assert not list(spool.directory.path.glob(".probe-*"))
    spool.close()


def test_stale_staging_directories_and_probe_files_are_removed(tmp_path: Path) -> None:
    """At start, an empty staging directory of a process that died and stray probe files are removed."""
    (tmp_path / ".w-dead").mkdir()
    (tmp_path / ".w-dead" / "LOCK").touch()
    (tmp_path / "w-old").mkdir()
    (tmp_path / "w-old" / ".probe-1234").write_bytes(b"x")
    (tmp_path / "w-old" / "000000000001.seg").write_bytes(frame(b"rows"))
    remove_stale_files(tmp_path)
    assert not (tmp_path / ".w-dead").exists()
    assert sorted(p.name for p in (tmp_path / "w-old").iterdir()) == ["000000000001.seg"]


def test_leftover_segments_counts_what_no_live_process_holds(tmp_path: Path) -> None:
    """Segments in unlocked spool directories are left-overs; a live spool's are not counted."""
    (tmp_path / "w-dead").mkdir()
    (tmp_path / "w-dead" / "000000000001.seg").write_bytes(frame(b"rows"))
    live = _spool(tmp_path, [])
    live.append(b"live", rows=1).result(timeout=10)
    assert leftover_segments(tmp_path) == (1, len(frame(b"rows")))
    live.close()


def test_live_spool_directories_are_not_claimed(tmp_path: Path) -> None:
    """A directory locked by a running spool is never taken as an orphan."""
    spool = _spool(tmp_path, [])
    assert claim_orphans(tmp_path) == []
    spool.close()


def test_orphan_open_segment_is_sealed_without_its_torn_tail(tmp_path: Path) -> None:
    """After a crash, an `.open` segment keeps its intact records, loses its torn tail and becomes `.seg`."""
    orphan = tmp_path / "w-crashed"
    orphan.mkdir()
    (orphan / "000000000001.open").write_bytes(frame(b"kept") + frame(b"torn")[:-2])
    (orphan / "000000000002.open").write_bytes(b"")
    claimed = claim_orphans(tmp_path)
    assert [d.path for d in claimed] == [orphan]
    sealed = seal_open_segments(claimed[0])
    assert [s.segment_id for s in sealed] == ["w-crashed-000000000001"]
    assert read_segment(sealed[0].path).records == [b"kept"]
    assert not (orphan / "000000000002.open").exists()


def test_empty_recovered_directory_is_removed(tmp_path: Path) -> None:
    """A claimed directory with no segments left is deleted."""
    orphan = SpoolDirectory(tmp_path / "w-empty")
    assert orphan.try_lock()
    orphan.remove_if_empty()
    assert not orphan.path.exists()


def test_backlog_totals_follow_adds_and_forgets() -> None:
    """Backlog sums rows and bytes of segments not yet uploaded, and reports the oldest row's age."""
    backlog = Backlog()
    assert backlog.totals() == (0, 0, 0.0)
    backlog.add("a", 3, 300, first_row_at=1.0)
    backlog.add("b", 2, 200)
    rows, size, age = backlog.totals()
    assert (rows, size) == (5, 500)
    assert age > 1000
    backlog.forget("a")
    assert backlog.totals()[:2] == (2, 200)


def test_awaitable_appends_resolve_on_their_event_loop(tmp_path: Path) -> None:
    """Appends awaited on an event loop all complete once durable, in one group commit or a few."""
    import asyncio  # noqa: PLC0415

    closed: list[ClosedSegment] = []
    spool = _spool(tmp_path, closed)

    async def run() -> None:
        await asyncio.gather(*(spool.append_awaitable(f"{i};".encode(), rows=1) for i in range(100)))

    asyncio.run(run())
    spool.close()
    records = read_segment(closed[0].path).records
    assert sum(bytes(r).count(b";") for r in records) == 100


def test_awaitable_append_failure_reaches_the_awaiting_request(tmp_path: Path) -> None:
    """A write error is raised in the awaiting coroutine, so the request is never acknowledged."""
    import asyncio  # noqa: PLC0415

    def broken(_: list[bytes]) -> bytes:
        raise OSError(5, "Input/output error")

    spool: Spool[bytes] = Spool(tmp_path, broken, lambda _: None, Backlog(), 1 << 20, 60.0)

    async def run() -> None:
        await spool.append_awaitable(b"x", rows=1)

    with pytest.raises(OSError, match="Input/output"):
        asyncio.run(run())
    spool.close()


def test_backlog_bytes_is_the_running_total_of_its_segments():
    """The byte count the capacity check reads equals the sum over segments, through adds and forgets."""
    backlog = Backlog()
    backlog.add("a", 1, 10)
    backlog.add("b", 2, 5)
    backlog.add("a", 1, 3)
    assert backlog.bytes == backlog.totals()[1] == 18
    backlog.forget("a")
    backlog.forget("never-added")
    assert backlog.bytes == backlog.totals()[1] == 5


def test_appends_of_one_loop_turn_become_one_group_commit(tmp_path: Path) -> None:
    """Awaitable appends made in the same event-loop turn reach the writer together: one record, one fsync."""
    import asyncio  # noqa: PLC0415

    closed: list[ClosedSegment] = []
    spool = _spool(tmp_path, closed)

    async def run() -> None:
        futures = [spool.append_awaitable(f"{i};".encode(), rows=1) for i in range(50)]  # no await in between
        await asyncio.gather(*futures)

    asyncio.run(run())
    spool.close()
    records = read_segment(closed[0].path).records
    assert len(records) == 1
    assert bytes(records[0]).count(b";") == 50
