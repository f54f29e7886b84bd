"""The durable spool: acknowledged rows wait here, fsync'd, until the table has committed them.

A spool is a directory of append-only segment files. Each record is one payload (`records.serialize`) framed
as `MAGIC | length (u32 LE) | crc32 (u32 LE) | payload`, so a torn last record (crash mid-write) is detected
and dropped, never half-read, and a damaged record in the middle is skipped: the reader resyncs at the next
intact frame and says how many bytes it could not read. A single writer thread takes every pending append at
once, writes them and fsyncs once (group commit), then resolves their futures: many concurrent requests share
one fsync.

Segments are `NNNNNNNNNNNN.open` while written and renamed to `.seg` when closed (size or age reached);
closed segments are what the flusher commits. Each worker process owns one spool directory, held by an
flock, so a dead worker's directory is found unlocked and adopted by a live process on the same spool root.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Generic, TypeVar

from leadscore.telemetry.logging import get_logger

MAGIC: Final = b"LSR1"
_HEADER: Final = struct.Struct("<4sII")
OPEN_SUFFIX: Final = ".open"
CLOSED_SUFFIX: Final = ".seg"
LOCK_FILE: Final = "LOCK"
# The outcomes' spool is this directory below the predictions' (outcomes/table.py): one root to mount and to adopt.
OUTCOMES_SUBDIR: Final = "outcomes"
log = get_logger("leadscore.lake.spool")
T = TypeVar("T")


def frame(payload: bytes) -> bytes:
    """One framed record."""
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True, slots=True)
class SegmentRead:
    """The intact records of a segment, the bytes between them that could not be read, and a torn tail."""

    records: list[memoryview]  # views into the file's bytes: no copy per record
    torn_bytes: int  # bytes after the last intact record (a crash mid-write leaves them)
    bad_bytes: int = 0  # bytes before the last intact record that belong to no intact record (damage)


def _intact_at(data: bytes, offset: int) -> int:
    """End of the intact record framed at `offset`, or -1."""
    if offset + _HEADER.size > len(data):
        return -1
    magic, length, crc = _HEADER.unpack_from(data, offset)
    start, end = offset + _HEADER.size, offset + _HEADER.size + int(length)
    if magic != MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc:
        return -1
    return end


def read_segment(path: Path) -> SegmentRead:
    """Read every intact record, skipping damaged bytes: after one, resume at the next intact frame."""
    data = path.read_bytes()
    view = memoryview(data)
    records: list[memoryview] = []
    offset = good_end = skipped = 0
    while offset + _HEADER.size <= len(data):
        end = _intact_at(data, offset)
        if end >= 0:
            records.append(view[offset + _HEADER.size : end])
            skipped += offset - good_end
            offset = good_end = end
            continue
        # Damage: look for the next frame start whose header and checksum hold.
        offset = data.find(MAGIC, offset + 1)
        if offset < 0:
            break
    return SegmentRead(records=records, torn_bytes=len(data) - good_end, bad_bytes=skipped)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _settle_on_loop(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the request was cancelled (client gone): nothing to tell it
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _settle(batch: list[_Append[T]], error: BaseException | None) -> None:
    """Resolve every waiter of a group commit: thread futures directly, loop futures once per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for a in batch:
        if isinstance(a.future, asyncio.Future):
            by_loop.setdefault(a.future.get_loop(), []).append(a.future)
        elif error is None:
            a.future.set_result(None)
        else:
            a.future.set_exception(error)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop already closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle_on_loop, futures, error)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"short write to spool: {written} of {len(data)} bytes")


@dataclass(slots=True)
class _Append(Generic[T]):
    item: T | None  # None: a wake-up with nothing to write
    rows: int
    future: Future[None] | asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class ClosedSegment:
    """A segment ready for upload."""

    path: Path
    segment_id: str  # unique across workers and restarts: the object key is derived from it


@dataclass(slots=True)
class SegmentStats:
    """What the backlog report needs to know of one segment not yet uploaded."""

    rows: int = 0
    bytes: int = 0
    first_row_at: float = field(default_factory=time.time)  # wall clock


class Backlog:
    """Rows and bytes waiting in the spool, across this process's segments (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segments: dict[str, SegmentStats] = {}
        self._bytes = 0

    def add(self, segment_id: str, rows: int, size: int, first_row_at: float | None = None) -> None:
        """Count rows and bytes written to a segment."""
        with self._lock:
            stats = self._segments.setdefault(segment_id, SegmentStats())
            if first_row_at is not None:
                stats.first_row_at = first_row_at
            stats.rows += rows
            stats.bytes += size
            self._bytes += size

    def forget(self, segment_id: str) -> None:
        """The segment was uploaded and deleted."""
        with self._lock:
            stats = self._segments.pop(segment_id, None)
            if stats is not None:
                self._bytes -= stats.bytes

    def rows_of(self, segment_id: str) -> int:
        """Rows waiting in one segment (0 when it is not known)."""
        with self._lock:
            stats = self._segments.get(segment_id)
            return stats.rows if stats is not None else 0

    @property
    def bytes(self) -> int:
        """Bytes waiting (read on every request, so kept as a running total)."""
        return self._bytes

    def totals(self) -> tuple[int, int, float]:
        """(rows, bytes, age in seconds of the oldest row not yet uploaded; 0 when empty)."""
        with self._lock:
            stats = list(self._segments.values())
        if not stats:
            return 0, 0, 0.0
        oldest = min(s.first_row_at for s in stats)
        return sum(s.rows for s in stats), sum(s.bytes for s in stats), max(0.0, time.time() - oldest)


class SpoolDirectory:
    """One locked spool directory (a worker's own, or a crashed worker's being recovered)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def try_lock(self) -> bool:
        """Take the directory's flock without waiting; False if a live process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        """Release the flock (the kernel also does when the process dies)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def segments(self) -> list[Path]:
        """Segment files, oldest first (names are zero-padded sequence numbers)."""
        return sorted(p for p in self.path.iterdir() if p.suffix in (OPEN_SUFFIX, CLOSED_SUFFIX))

    def segment_id(self, path: Path) -> str:
        """Id of a segment: directory name + sequence number."""
        return f"{self.path.name}-{path.stem}"

    def remove_if_empty(self) -> None:
        """Delete a recovered directory once it holds no segments."""
        if not self.segments():
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            self.unlock()
            try:
                self.path.rmdir()
            except OSError:
                return
            fsync_dir(self.path.parent)


def claim_orphans(root: Path) -> list[SpoolDirectory]:
    """Lock every spool directory under `root` that no live process holds (left by a crash or a stop)."""
    if not root.is_dir():
        return []
    orphans: list[SpoolDirectory] = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("w-")):
        directory = SpoolDirectory(path)
        if directory.try_lock():
            orphans.append(directory)
    return orphans


def remove_stale_files(root: Path) -> None:
    """Remove what a crash can leave behind that holds no rows: probe files and never-used staging directories."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.is_dir() and path.name.startswith(".w-"):
            # A spool being created when its process died: locked, renamed and only then used, so it is empty.
            directory = SpoolDirectory(path)
            if directory.try_lock():
                if not directory.segments():
                    (path / LOCK_FILE).unlink(missing_ok=True)
                    directory.unlock()
                    path.rmdir()
                else:
                    directory.unlock()
        elif path.is_dir() and path.name.startswith("w-"):
            for probe in path.glob(".probe-*"):
                probe.unlink(missing_ok=True)


def leftover_segments(root: Path) -> tuple[int, int]:
    """(segments, bytes) in spool directories no live process holds: what a stopped server left behind."""
    segments = size = 0
    for directory in claim_orphans(root):
        try:
            for path in directory.segments():
                segments += 1
                size += path.stat().st_size
        finally:
            directory.unlock()
    return segments, size


def seal_open_segments(directory: SpoolDirectory) -> list[ClosedSegment]:
    """After a crash: keep the intact records of `.open` segments, drop a torn tail, close them."""
    closed: list[ClosedSegment] = []
    for path in directory.segments():
        if path.suffix == OPEN_SUFFIX:
            read = read_segment(path)
            if read.torn_bytes:
                log.warning("spool_torn_tail_dropped", segment=path.name, torn_bytes=read.torn_bytes)
                with path.open("r+b") as fh:
                    fh.truncate(path.stat().st_size - read.torn_bytes)
                    os.fsync(fh.fileno())
            if not read.records:
                path.unlink()
                continue
            closed_path = path.with_suffix(CLOSED_SUFFIX)
            path.rename(closed_path)
            fsync_dir(directory.path)
        else:
            closed_path = path
        closed.append(ClosedSegment(closed_path, directory.segment_id(closed_path)))
    return closed


class Spool(Generic[T]):
    """This process's spool: appends are group-committed by one writer thread.

    `append` returns a future that completes once the record is on disk and fsync'd (or fails with the
    I/O error). All items pending at once become ONE record, built by `serialize` on the writer thread, so
    per-request costs (building Arrow columns) are paid once per group, not once per request. Closed
    segments are handed to `on_closed` (the flusher).
    """

    def __init__(
        self,
        root: Path,
        serialize: Callable[[list[T]], bytes],
        on_closed: Callable[[ClosedSegment], None],
        backlog: Backlog,
        segment_max_bytes: int,
        segment_max_age_seconds: float,
        fsync: bool = True,
    ) -> None:
        name = f"w-{uuid.uuid4().hex[:12]}"
        # Lock under a hidden name, then rename: another process scanning for orphans never sees it unlocked.
        staging = SpoolDirectory(root / f".{name}")
        if not staging.try_lock():
            raise RuntimeError(f"cannot lock new spool directory {staging.path}")
        staging.path.rename(root / name)
        fsync_dir(root)
        self.directory = staging
        self.directory.path = root / name
        self._serialize = serialize
        self._on_closed = on_closed
        self._backlog = backlog
        self._max_bytes = segment_max_bytes
        self._max_age = segment_max_age_seconds
        self._fsync = fsync
        self._queue: queue.SimpleQueue[_Append[T] | list[_Append[T]] | None] = queue.SimpleQueue()
        # Appends made on an event loop during one turn of it, handed to the writer together (see append_awaitable).
        self._from_loop: list[_Append[T]] = []
        self._seq = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._rotate_requested = threading.Event()
        # The last write failure (ENOSPC, EIO), until a later write or probe succeeds: readiness reads it.
        self.write_error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def append(self, item: T, rows: int) -> Future[None]:
        """Queue one item; the future resolves when it is durable."""
        future: Future[None] = Future()
        self._queue.put(_Append(item, rows, future))
        return future

    def append_awaitable(self, item: T, rows: int) -> asyncio.Future[None]:
        """Like `append`, for a caller on an event loop.

        The futures of one group commit are resolved with a single wake-up of their loop, not one per request.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        # Requests finishing in the same loop turn (e.g. those of one prediction micro-batch) reach the writer in one
        # hand-over: one thread wake-up instead of one per request. Measured on 1-lead requests, the per-request
        # hand-over cost as much CPU in thread wake-ups as the record itself.
        if not self._from_loop:
            loop.call_soon(self._hand_over)
        self._from_loop.append(_Append(item, rows, future))
        return future

    def _hand_over(self) -> None:
        batch, self._from_loop = self._from_loop, []
        if batch:
            self._queue.put(batch)

    def rotate(self) -> None:
        """Close the current segment soon (used on shutdown so everything can be uploaded)."""
        self._rotate_requested.set()
        self._queue.put(_Append(None, 0, Future()))  # wake the writer

    def close(self) -> None:
        """Write what is queued, close the segment and stop the writer thread."""
        self._queue.put(None)
        self._thread.join()

    def _current_segment(self) -> tuple[int, Path]:
        """The open segment's descriptor and path, opening a new segment if none is open."""
        if self._fd is None or self._path is None:
            self._seq += 1
            self._path = self.directory.path / f"{self._seq:012d}{OPEN_SUFFIX}"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            fsync_dir(self.directory.path)
            self._size = 0
            self._opened_at = time.monotonic()
        return self._fd, self._path

    def _close_segment(self) -> None:
        if self._fd is None or self._path is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        if self._size == 0:
            self._path.unlink()
            fsync_dir(self.directory.path)
            return
        target = self._path.with_suffix(CLOSED_SUFFIX)
        self._path.rename(target)
        fsync_dir(self.directory.path)
        self._on_closed(ClosedSegment(target, self.directory.segment_id(target)))

    def _drain(self, first: _Append[T] | list[_Append[T]]) -> tuple[list[_Append[T]], bool]:
        batch: list[_Append[T]] = []
        item: _Append[T] | list[_Append[T]] | None = first
        while True:
            if item is None:
                return batch, True
            if isinstance(item, list):
                batch.extend(item)
            else:
                batch.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _write(self, batch: list[_Append[T]]) -> None:
        items = [a.item for a in batch if a.item is not None]
        try:
            if items:
                fd, path = self._current_segment()
                data = frame(self._serialize(items))
                _write_all(fd, data)
                if self._fsync:
                    os.fsync(fd)
                self._size += len(data)
                self._backlog.add(self.directory.segment_id(path), sum(a.rows for a in batch), len(data))
        except Exception as exc:  # every failure must reach the waiting requests, not kill the thread
            log.exception("spool_write_failed")
            if isinstance(exc, OSError):
                self.write_error = exc
            if self._fd is not None:
                # Cut a partial record off so the segment stays readable past this point.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            _settle(batch, exc)
            return
        if items:
            self.write_error = None
        _settle(batch, None)

    def probe(self, size: int = 64 * 1024) -> bool:
        """Whether the spool's disk takes writes again (clears `write_error`); readiness asks while writes fail.

        Writes, fsyncs and removes a small file beside the segments, so no segment is touched.
        """
        path = self.directory.path / f".probe-{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, b"\0" * size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.write_error = exc
            return False
        finally:
            path.unlink(missing_ok=True)
        self.write_error = None
        return True

    def _due(self) -> bool:
        if self._fd is None:
            return False
        return (
            self._rotate_requested.is_set()
            or self._size >= self._max_bytes
            or time.monotonic() - self._opened_at >= self._max_age
        )

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=min(1.0, self._max_age))
            except queue.Empty:
                first = _Append(None, 0, Future())
            if first is None:
                batch: list[_Append[T]] = []
                stop = True
            else:
                batch, stop = self._drain(first)
            self._write(batch)
            if stop or self._due():
                self._rotate_requested.clear()
                try:
                    self._close_segment()
                except OSError:
                    log.exception("spool_segment_close_failed", segment=str(self._path))

    def iter_closed(self) -> Iterator[ClosedSegment]:
        """Closed segments of this process not yet uploaded (used on start-up of the flusher)."""
        for path in self.directory.segments():
            if path.suffix == CLOSED_SUFFIX:
                yield ClosedSegment(path, self.directory.segment_id(path))
