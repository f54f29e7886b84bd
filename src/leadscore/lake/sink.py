"""The lake sink: the spool in front, a background flusher behind it that turns segments into Parquet.

Request path: `check_capacity()` before scoring, `await record(rows)` after; in `sync` mode that returns only
once the rows are fsync'd in the spool. The flusher uploads each closed segment as one Parquet file per
day partition under a key derived from the segment id, and deletes the segment only after every put
succeeded, retrying with exponential backoff and jitter while the store is down.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential_jitter

from leadscore.errors import ServiceUnavailable
from leadscore.lake.records import RowGroup, deserialize_groups, serialize, to_record_batch
from leadscore.lake.schema import ARROW_SCHEMA, PARQUET_OPTIONS
from leadscore.lake.spool import (
    Backlog,
    ClosedSegment,
    Spool,
    SpoolDirectory,
    claim_orphans,
    fsync_dir,
    read_segment,
    seal_open_segments,
)
from leadscore.lake.store import PARTITION_FORMAT, Store, replaced_by
from leadscore.telemetry import metrics
from leadscore.telemetry.logging import get_logger

log = get_logger("leadscore.lake")
CHUNK_ROWS: Final = 5_000
# The converter runs at a lower priority than the request workers: its work can wait a few milliseconds, theirs is
# the requests' latency.
CONVERTER_NICE: Final = 10


@dataclass(frozen=True, slots=True)
class LakeConfig:
    """The sink's knobs (from Settings)."""

    spool_dir: Path
    durability: str = "sync"  # "sync": ack after fsync; "async": ack before (rows can be lost on a crash)
    segment_max_bytes: int = 32 * 1024 * 1024
    segment_max_age_seconds: float = 300.0
    spool_max_bytes: int = 2 * 1024 * 1024 * 1024
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    # Convert segments to Parquet in a child process: the conversion then never holds the request worker's
    # GIL (measured, 1-lead requests at 32 connections: p99 ~49 ms with it in a thread, ~25 ms in a child).
    convert_in_subprocess: bool = False


def partition_tables(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """Split rows by the UTC day of their timestamp: [("year=/month=/day=", rows), ...]."""
    ts = table.column("timestamp")
    key = pc.add(
        pc.add(pc.multiply(pc.year(ts), 10000), pc.multiply(pc.month(ts), 100)),
        pc.day(ts),
    )
    parts = []
    for value in sorted(pc.unique(key).to_pylist()):
        day = int(value)
        partition = PARTITION_FORMAT.format(year=day // 10000, month=day // 100 % 100, day=day % 100)
        parts.append((partition, table.filter(pc.equal(key, value))))
    return parts


def segment_keys(segment_id: str, table: pa.Table) -> list[tuple[str, pa.Table]]:
    """Deterministic object keys for a segment's rows: a retry writes the same keys again."""
    return [(f"{partition}/part-{segment_id}.parquet", rows) for partition, rows in partition_tables(table)]


def segment_parquet(segment_id: str, path: Path, chunk_rows: int = CHUNK_ROWS) -> tuple[dict[str, bytes], int]:
    """The segment's rows as Parquet files by day partition ({key: file bytes}) and the row count.

    Rows are converted `chunk_rows` at a time and appended to each file as row groups, so memory stays
    bounded by the chunk, not by the segment (a 32 MiB segment holds about 50,000 leads).
    """
    files: dict[str, tuple[io.BytesIO, pq.ParquetWriter]] = {}
    pending: list[RowGroup] = []
    pending_rows = total = 0

    def write_pending() -> None:
        table = pa.Table.from_batches([to_record_batch(pending)])
        for key, rows in segment_keys(segment_id, table):
            if key not in files:
                buffer = io.BytesIO()
                files[key] = (buffer, pq.ParquetWriter(buffer, ARROW_SCHEMA, **PARQUET_OPTIONS))
            files[key][1].write_table(rows)

    for record in read_segment(path).records:
        for group in deserialize_groups(record):
            pending.append(group)
            pending_rows += group.batch.size
            total += group.batch.size
            if pending_rows >= chunk_rows:
                write_pending()
                pending, pending_rows = [], 0
    if pending:
        write_pending()
    out = {}
    for key, (buffer, writer) in files.items():
        writer.close()
        out[key] = buffer.getvalue()
    return out, total


def count_segment_rows(path: Path) -> int:
    """Rows in a segment's intact records (no Arrow conversion)."""
    return sum(g.batch.size for record in read_segment(path).records for g in deserialize_groups(record))


def _outcome_seen(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _start_converter() -> ProcessPoolExecutor:
    """The process that converts segments to Parquet, started now rather than at the first segment.

    Its start-up (importing pyarrow and the service, about 2 s of CPU) then happens while the worker starts, not
    in the middle of the load that fills the first segment. spawn, not fork: forking a process that runs threads
    can copy held locks into the child.
    """
    converter = ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=os.nice, initargs=(CONVERTER_NICE,)
    )
    converter.submit(_warm_up)
    return converter


def _warm_up() -> None:
    """Runs in the converter process: importing this module loaded everything a conversion needs."""


class LakeSink:
    """Durable recording of scored rows, and their upload to the store."""

    def __init__(self, config: LakeConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.backlog = Backlog()
        self._segments: queue.SimpleQueue[ClosedSegment | None] = queue.SimpleQueue()
        self._abort = threading.Event()
        self._idle = threading.Event()
        self._recovered: list[SpoolDirectory] = []
        self._spool: Spool[RowGroup] | None = None
        self._converter: ProcessPoolExecutor | None = None
        self._flusher: threading.Thread | None = None
        self.uploaded_files = 0
        self.upload_failures = 0
        self.last_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover segments left by a crash (they go first), then open this process's spool."""
        self.config.spool_dir.mkdir(parents=True, exist_ok=True)
        for directory in claim_orphans(self.config.spool_dir):
            for segment in seal_open_segments(directory):
                rows = count_segment_rows(segment.path)
                self.backlog.add(segment.segment_id, rows, segment.path.stat().st_size, segment.path.stat().st_mtime)
                self._segments.put(segment)
                log.info("spool_segment_recovered", segment=segment.segment_id, rows=rows)
            self._recovered.append(directory)
        self._spool = Spool(
            self.config.spool_dir,
            serialize=serialize,
            on_closed=self._segments.put,
            backlog=self.backlog,
            segment_max_bytes=self.config.segment_max_bytes,
            segment_max_age_seconds=self.config.segment_max_age_seconds,
            fsync=self.config.durability == "sync",
        )
        if self.config.convert_in_subprocess:
            self._converter = _start_converter()
        self._flusher = threading.Thread(target=self._flush_loop, name="lake-flusher", daemon=True)
        self._flusher.start()

    def close(self, timeout: float) -> bool:
        """Close the spool and upload everything within `timeout` seconds; True if nothing is left behind."""
        deadline = time.monotonic() + timeout
        if self._spool is not None:
            self._spool.close()
        self._segments.put(None)
        if self._flusher is not None:
            self._flusher.join(max(0.0, deadline - time.monotonic()))
            if self._flusher.is_alive():
                self._abort.set()
                self._flusher.join(5.0)
        if self._converter is not None:
            self._converter.shutdown(wait=True, cancel_futures=True)
        rows, size, _ = self.backlog.totals()
        if rows:
            log.warning("lake_backlog_left_in_spool", rows=rows, bytes=size, spool=str(self.config.spool_dir))
        else:
            log.info("lake_flushed")
        if self._spool is not None:
            self._spool.directory.remove_if_empty()
        return rows == 0

    # --- request path ------------------------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Refuse new work (503) while the spool is at its cap: nothing is acknowledged that cannot be kept."""
        if self.backlog.bytes >= self.config.spool_max_bytes:
            raise ServiceUnavailable(
                "the data lake is not keeping up (spool full); retry later", headers={"Retry-After": "30"}
            )

    async def record(self, rows: RowGroup) -> None:
        """Spool the rows; in sync mode return only once they are fsync'd."""
        if self._spool is None:
            raise ServiceUnavailable("the data lake is not started", headers={"Retry-After": "1"})
        if self.config.durability != "sync":
            # Written shortly, fsync'd when its segment closes; the answer does not wait. A failed write is logged by
            # the spool writer, so the outcome is only marked as seen here.
            self._spool.append_awaitable(rows, rows.batch.size).add_done_callback(_outcome_seen)
            return
        try:
            await self._spool.append_awaitable(rows, rows.batch.size)
        except OSError as exc:
            raise ServiceUnavailable(
                f"could not record the predictions durably: {exc.strerror or exc}", headers={"Retry-After": "5"}
            ) from exc

    def ready(self) -> bool:
        """Whether the lake accepts rows now (False while the spool is full)."""
        return not self.status()["spool_full"]

    def status(self) -> dict[str, Any]:
        """Backlog and upload state, for health and readiness."""
        rows, size, age = self.backlog.totals()
        return {
            "uri": self.store.uri,
            "durability": self.config.durability,
            "backlog_rows": rows,
            "backlog_bytes": size,
            "oldest_unflushed_age_seconds": round(age, 3),
            "spool_full": size >= self.config.spool_max_bytes,
            "uploaded_files": self.uploaded_files,
            "upload_failures": self.upload_failures,
            "last_error": self.last_error,
        }

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every closed segment so far is uploaded (tests and tools)."""
        return self._idle.wait(timeout)

    def rotate(self) -> None:
        """Close the current segment now so it is uploaded without waiting for its age."""
        if self._spool is not None:
            self._idle.clear()
            self._spool.rotate()

    # --- flusher -----------------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(OSError),
            wait=wait_exponential_jitter(
                multiplier=self.config.retry_initial_seconds, max=self.config.retry_max_seconds
            ),
            stop=stop_when_event_set(self._abort),
            sleep=self._sleep,
            before_sleep=self._on_retry,
            reraise=True,
        )
        while True:
            if self._segments.empty():
                self._idle.set()
            segment = self._segments.get()
            if segment is None:
                return
            self._idle.clear()
            try:
                retrying(self.upload_segment, segment)
            except OSError:
                log.warning("lake_upload_abandoned_until_restart", segment=segment.segment_id)
                return
            except Exception:  # noqa: BLE001 - an unreadable segment must not stop the others; it is kept aside
                self._quarantine(segment)
            self._forget_recovered_dirs()

    def _sleep(self, seconds: float) -> None:
        # Wakes early when the shutdown deadline passes.
        self._abort.wait(seconds)

    def _on_retry(self, state: RetryCallState) -> None:
        self.upload_failures += 1
        metrics.observe_lake_upload_failure()
        error = state.outcome.exception() if state.outcome else None
        self.last_error = repr(error)
        log.warning("lake_upload_failed", attempt=state.attempt_number, error=repr(error))

    def upload_segment(self, segment: ClosedSegment) -> list[str]:
        """Put the segment's rows as Parquet (one file per day), then delete the segment; returns the keys."""
        started = time.perf_counter()
        files, rows = self._convert(segment)
        keys = []
        for key, data in files.items():
            if self._already_compacted(key):
                # A retry after a crash, and the day was compacted since: the rows are in the compacted file.
                log.warning("lake_upload_skipped_already_compacted", key=key)
                continue
            self.store.put(key, data)
            keys.append(key)
        segment.path.unlink()
        fsync_dir(segment.path.parent)
        self.backlog.forget(segment.segment_id)
        # Give the conversion's Arrow buffers back to the OS: a worker's memory stays flat between flushes.
        pa.default_memory_pool().release_unused()
        self.uploaded_files += len(keys)
        self.last_error = None
        metrics.observe_lake_flush(rows, len(keys), time.perf_counter() - started)
        log.info("lake_segment_uploaded", segment=segment.segment_id, rows=rows, keys=keys)
        return keys

    def _convert(self, segment: ClosedSegment) -> tuple[dict[str, bytes], int]:
        if self._converter is None:
            return segment_parquet(segment.segment_id, segment.path)
        try:
            return self._converter.submit(segment_parquet, segment.segment_id, segment.path).result()
        except BrokenProcessPool as exc:
            # The converter died (e.g. killed): start a new one; the retry loop tries the segment again.
            self._converter = _start_converter()
            raise OSError(f"Parquet converter process died: {exc}") from exc

    def _already_compacted(self, key: str) -> bool:
        """True when a compacted file of the key's day lists the key as replaced (one listing per upload)."""
        partition = key.rsplit("/", 1)[0]
        return any(key in replaced_by(self.store, other) for other in self.store.list(partition))

    def _quarantine(self, segment: ClosedSegment) -> None:
        target = self.config.spool_dir / "quarantine" / f"{segment.segment_id}.seg"
        log.exception("lake_segment_quarantined", segment=segment.segment_id, moved_to=str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        segment.path.rename(target)
        self.backlog.forget(segment.segment_id)

    def _forget_recovered_dirs(self) -> None:
        for directory in list(self._recovered):
            if not directory.segments():
                directory.remove_if_empty()
                self._recovered.remove(directory)
