"""The lake sink: the durable spool in front, a flusher behind it that commits segments to the Iceberg table.

Request path: `check_capacity()` before scoring, `await record(rows)` after; it returns once the rows are written
to the spool (and fsync'd, in `sync` mode), so an answer means the rows are kept. The flusher gathers closed
segments for up to `commit_interval_seconds` and commits them in one Iceberg snapshot (a few commits per worker a
minute whatever the load, many segments each), then deletes them. A commit that fails is retried with
exponential backoff; a commit that landed before a crash is recognised by its snapshot summary, so no row is
counted twice. Segments with damaged bytes are committed as far as they can be read and kept in quarantine.
A live process adopts the spool directories of processes that died (an flock their owner held).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Final, Literal

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential_jitter

from leadscore.lake.errors import SpoolFull, SpoolWriteFailed
from leadscore.lake.flush import PREDICTIONS, CommitReport, Layout, SegmentReport, commit_segments
from leadscore.lake.quarantine import quarantine_count, quarantine_dir
from leadscore.lake.spool import (
    Backlog,
    ClosedSegment,
    Spool,
    SpoolDirectory,
    claim_orphans,
    fsync_dir,
    remove_stale_files,
    seal_open_segments,
)
from leadscore.lake.table import TableConfig
from leadscore.runtime import leave_out_pandas
from leadscore.telemetry import metrics
from leadscore.telemetry.logging import get_logger

log = get_logger("leadscore.lake")
# The committer runs at a lower priority than the request workers: its work can wait a few milliseconds, theirs is
# the requests' latency.
COMMITTER_NICE: Final = 10


@dataclass(frozen=True, slots=True)
class LakeConfig:
    """The sink's knobs; `Settings.lake_config()` builds it (the defaults live in Settings alone)."""

    spool_dir: Path
    table: TableConfig
    durability: Literal["sync", "async"]  # sync: ack after fsync; async: ack after the write, before the fsync
    segment_max_bytes: int
    segment_max_age_seconds: float
    spool_max_bytes: int
    retry_initial_seconds: float
    retry_max_seconds: float
    commit_interval_seconds: float
    commit_max_rows: int
    commit_timeout_seconds: float
    adopt_interval_seconds: float
    # Commit in a child process: building Arrow columns and Parquet files then never holds a request worker's GIL
    # (bench/README.md has the 1-lead p99 with and without).
    commit_in_subprocess: bool


class CommitTimedOut(OSError):
    """A commit did not finish in time (a hung store, or the committer process died): it is retried."""


class _Abandoned(Exception):
    """The shutdown deadline passed while a commit was being retried."""


def _committer_init() -> None:
    leave_out_pandas()
    os.nice(COMMITTER_NICE)


def _warm_up() -> None:
    """Runs in the committer process: importing this module loaded everything a commit needs."""


class LakeSink:
    """Durable recording of scored rows, and their commit to the lake's table.

    `layout` says what the rows are: the predictions by default; the outcomes table uses a sink of its own.
    """

    def __init__(self, config: LakeConfig, layout: Layout = PREDICTIONS) -> None:
        self.config = config
        self.layout = layout
        self.backlog = Backlog()
        self._segments: queue.SimpleQueue[ClosedSegment | None] = queue.SimpleQueue()
        self._abort = threading.Event()
        self._settled = threading.Condition()
        self._recovered: list[SpoolDirectory] = []
        self._spool: Spool[Any] | None = None
        self._pool: Pool | None = None
        self._flusher: threading.Thread | None = None
        self._last_commit = 0.0
        self._last_probe = 0.0
        self._last_adopt = 0.0
        self.commits = 0
        self.committed_rows = 0
        self.commit_failures = 0
        self.quarantined = 0
        self.last_error: str | None = None

    @property
    def uri(self) -> str:
        """Where the table lives."""
        return self.config.table.location

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt spools left by processes that died (their segments go first), then open this process's spool."""
        self.config.spool_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_files(self.config.spool_dir)
        self.quarantined = quarantine_count(self.config.spool_dir)
        if self.layout.metrics:
            metrics.set_lake_quarantined(self.quarantined)
        self._adopt_orphans()
        self._spool = Spool(
            self.config.spool_dir,
            serialize=self.layout.serialize,
            on_closed=self._segments.put,
            backlog=self.backlog,
            segment_max_bytes=self.config.segment_max_bytes,
            segment_max_age_seconds=self.config.segment_max_age_seconds,
            fsync=self.config.durability == "sync",
        )
        if self.config.commit_in_subprocess:
            self._pool = self._start_pool()
        self._flusher = threading.Thread(target=self._flush_loop, name="lake-flusher", daemon=True)
        self._flusher.start()

    def close(self, timeout: float) -> bool:
        """Close the spool and commit everything within `timeout` seconds; True if nothing is left behind.

        Past the deadline a commit in progress is abandoned (its process ended): what it held stays on the spool,
        and the next process on this spool root adopts it; a commit that landed all the same is recognised then.
        """
        deadline = time.monotonic() + timeout
        if self._spool is not None:
            self._spool.close()
        self._segments.put(None)
        if self._flusher is not None:
            self._flusher.join(max(0.0, deadline - time.monotonic()))
            if self._flusher.is_alive():
                self._abort.set()
                self._flusher.join(5.0)
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
        rows, size, _ = self.backlog.totals()
        if rows:
            log.warning("lake_backlog_left_in_spool", rows=rows, bytes=size, spool=str(self.config.spool_dir))
        else:
            log.info("lake_flushed")
        # Let go of every spool directory: what is left is then adoptable (and counted by the exit check).
        for directory in [*self._recovered, *([self._spool.directory] if self._spool is not None else [])]:
            directory.remove_if_empty()
            directory.unlock()
        return rows == 0

    # --- request path ------------------------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Refuse new work while the spool is at its cap: nothing is acknowledged that cannot be kept."""
        if self.backlog.bytes >= self.config.spool_max_bytes:
            raise SpoolFull("the data lake is not keeping up (spool full)", retry_after=30)

    async def record(self, rows: object) -> None:
        """Spool the rows; return once they are written (and fsync'd in sync mode), else raise SpoolWriteFailed."""
        if self._spool is None:
            raise SpoolWriteFailed("the data lake is not started", retry_after=1)
        try:
            await self._spool.append_awaitable(rows, self.layout.group_rows(rows))
        except OSError as exc:
            raise SpoolWriteFailed("could not record the predictions durably", retry_after=5) from exc

    def ready(self) -> bool:
        """Whether new rows can be kept: the spool is below its cap and its disk takes writes."""
        if self.backlog.bytes >= self.config.spool_max_bytes:
            return False
        spool = self._spool
        if spool is None:
            return False
        if spool.write_error is None:
            return True
        # While writes fail, probe the disk (at most once a second): readiness comes back when it takes writes.
        now = time.monotonic()
        if now - self._last_probe < 1.0:
            return False
        self._last_probe = now
        return spool.probe()

    def status(self) -> dict[str, Any]:
        """Backlog and commit state, for health (behind a key) and tools."""
        rows, size, age = self.backlog.totals()
        spool = self._spool
        return {
            "uri": self.uri,
            "durability": self.config.durability,
            "backlog_rows": rows,
            "backlog_bytes": size,
            "oldest_unflushed_age_seconds": round(age, 3),
            "spool_full": size >= self.config.spool_max_bytes,
            "spool_write_failing": spool is not None and spool.write_error is not None,
            "commits": self.commits,
            "committed_rows": self.committed_rows,
            "commit_failures": self.commit_failures,
            "quarantined_segments": self.quarantined,
            "last_error": self.last_error,
        }

    def wait_idle(self, timeout: float) -> bool:
        """Close the open segment and wait until everything written so far is committed (tests and tools)."""
        deadline = time.monotonic() + timeout
        self.rotate()
        with self._settled:
            while self.backlog.bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(remaining, 0.5))
        return True

    def rotate(self) -> None:
        """Close the current segment now so it is committed without waiting for its age."""
        if self._spool is not None:
            self._spool.rotate()

    # --- flusher -----------------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(
                multiplier=self.config.retry_initial_seconds,
                max=self.config.retry_max_seconds,
                jitter=self.config.retry_initial_seconds,
            ),
            stop=stop_when_event_set(self._abort),
            sleep=self._sleep,
            before_sleep=self._on_retry,
            reraise=True,
        )
        while True:
            batch, stop = self._gather()
            if batch:
                try:
                    report = retrying(self._commit, batch)
                except Exception:  # noqa: BLE001 - only the abort ends the retries: the rows stay on the spool
                    log.warning("lake_commit_abandoned_until_restart", segments=[s.segment_id for s in batch])
                    return
                self._settle(batch, report)
            if stop:
                return

    def _sleep(self, seconds: float) -> None:
        # Wakes early when the shutdown deadline passes.
        self._abort.wait(seconds)

    def _gather(self) -> tuple[list[ClosedSegment], bool]:
        """Closed segments for one commit: the first to arrive, and all that follow within the commit interval."""
        batch: list[ClosedSegment] = []
        while not batch:
            if time.monotonic() - self._last_adopt >= self.config.adopt_interval_seconds:
                self._adopt_orphans()
            try:
                item = self._segments.get(timeout=self.config.adopt_interval_seconds)
            except queue.Empty:
                continue
            if item is None:
                return [], True
            batch.append(item)
        rows = self.backlog.rows_of(batch[0].segment_id)
        deadline = self._last_commit + self.config.commit_interval_seconds
        while rows < self.config.commit_max_rows:
            try:
                item = self._segments.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            rows += self.backlog.rows_of(item.segment_id)
        return batch, False

    def _on_retry(self, state: RetryCallState) -> None:
        self.commit_failures += 1
        if self.layout.metrics:
            metrics.observe_lake_upload_failure()
        error = state.outcome.exception() if state.outcome else None
        self.last_error = repr(error)
        log.warning("lake_commit_failed", attempt=state.attempt_number, error=repr(error))

    def _commit(self, batch: Sequence[ClosedSegment]) -> CommitReport:
        segments = [(s.segment_id, str(s.path)) for s in batch]
        if self._pool is None:
            return commit_segments(self.config.table, segments, self.layout)
        result = self._pool.apply_async(commit_segments, (self.config.table, segments, self.layout))
        deadline = time.monotonic() + self.config.commit_timeout_seconds
        while True:
            try:
                report: CommitReport = result.get(timeout=0.25)
            except multiprocessing.TimeoutError:
                if self._abort.is_set() or time.monotonic() > deadline:
                    # A hung store call or a dead committer: end it; the retry (or the next process) starts afresh.
                    self._pool.terminate()
                    self._pool = self._start_pool()
                    raise CommitTimedOut("the commit did not finish in time") from None
                continue
            return report

    def _start_pool(self) -> Pool:
        # spawn, not fork: forking a process that runs threads can copy held locks into the child.
        pool = multiprocessing.get_context("spawn").Pool(1, initializer=_committer_init)
        pool.apply_async(_warm_up)
        return pool

    def _settle(self, batch: Sequence[ClosedSegment], report: CommitReport) -> None:
        directories = set()
        for segment, outcome in zip(batch, report.segments, strict=True):
            if outcome.faulty:
                self._quarantine(segment, outcome, report.snapshot_id)
            else:
                segment.path.unlink(missing_ok=True)
                directories.add(segment.path.parent)
            if outcome.already_committed:
                log.warning("lake_segment_already_committed", segment=segment.segment_id)
            self.backlog.forget(segment.segment_id)
        for directory in directories:
            fsync_dir(directory)
        self._last_commit = time.monotonic()
        self.commits += 1
        self.committed_rows += report.rows
        self.last_error = None
        if self.layout.metrics:
            metrics.observe_lake_flush(report.rows, len(batch), report.seconds)
        log.info(
            "lake_committed",
            segments=len(batch),
            rows=report.rows,
            snapshot_id=report.snapshot_id,
            seconds=round(report.seconds, 3),
        )
        if report.expired_snapshots or report.expiry_error:
            log.info("lake_snapshots_expired", expired=report.expired_snapshots, error=report.expiry_error)
        self._forget_recovered_dirs()
        with self._settled:
            self._settled.notify_all()

    def _quarantine(self, segment: ClosedSegment, outcome: SegmentReport, snapshot_id: int | None) -> None:
        """Keep a segment that could not be read whole (never deleted); `leadscore lake requeue` re-drives it."""
        target_dir = quarantine_dir(self.config.spool_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{segment.segment_id}.seg"
        report = {
            **asdict(outcome),
            "snapshot_id": snapshot_id,
            "quarantined_at": datetime.now(UTC).isoformat(),
            "reason": "damaged bytes" if outcome.bad_bytes else "records this version cannot read",
        }
        (target_dir / f"{segment.segment_id}.json").write_text(json.dumps(report, indent=2))
        segment.path.rename(target)
        fsync_dir(target_dir)
        fsync_dir(segment.path.parent)
        self.quarantined = quarantine_count(self.config.spool_dir)
        if self.layout.metrics:
            metrics.set_lake_quarantined(self.quarantined)
        log.error(
            "lake_segment_quarantined",
            segment=segment.segment_id,
            committed_rows=outcome.rows,
            bad_bytes=outcome.bad_bytes,
            bad_records=outcome.bad_records,
            error=outcome.error,
            moved_to=str(target),
        )

    def _adopt_orphans(self) -> None:
        """Lock the spool directories of processes that died and queue their segments."""
        self._last_adopt = time.monotonic()
        for directory in claim_orphans(self.config.spool_dir):
            for segment in seal_open_segments(directory):
                stat = segment.path.stat()
                rows = self.layout.segment_rows(segment.path)
                self.backlog.add(segment.segment_id, rows, stat.st_size, stat.st_mtime)
                self._segments.put(segment)
                log.info("spool_segment_adopted", segment=segment.segment_id, rows=rows)
            self._recovered.append(directory)
        self._forget_recovered_dirs()

    def _forget_recovered_dirs(self) -> None:
        for directory in list(self._recovered):
            if not directory.segments():
                directory.remove_if_empty()
                self._recovered.remove(directory)
