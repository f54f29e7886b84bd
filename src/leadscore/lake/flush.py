"""One commit of spool segments to the Iceberg table: read them, skip what is committed, append the rest.

Runs in the sink's child process (so building Arrow columns and Parquet files never holds a request worker's GIL)
or in the flusher thread. It is safe to run again for the same segments after any failure or crash: a segment
already named by a snapshot is skipped, so a row reaches the table once.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from leadscore.heap import trim_heap
from leadscore.lake.records import (
    BLOCK_ROWS,
    RowBlock,
    deserialize_blocks,
    segment_rows,
    serialize,
    to_record_batch,
)
from leadscore.lake.schema import ARROW_SCHEMA, PARTITION_KEYS
from leadscore.lake.spool import read_segment
from leadscore.lake.table import (
    TableConfig,
    commit_data_files,
    committed_segments,
    data_files,
    expire_snapshots,
    load_table,
)

if TYPE_CHECKING:
    from pyiceberg.table import Table

# Rows converted to Arrow at a time (see records.BLOCK_ROWS).
CHUNK_ROWS: Final = BLOCK_ROWS
EXPIRY_INTERVAL_SECONDS: Final = 3600.0
# The table, loaded once per process that commits (refreshed before each commit), and when this process last
# expired its old snapshots.
_TABLES: dict[TableConfig, Table] = {}
_LAST_EXPIRY: dict[TableConfig, float] = {}


@dataclass(frozen=True, slots=True)
class Layout:
    """What one table's spool records hold and how they become its rows (the predictions', or the outcomes').

    It travels to the committer process: its functions must be module-level (pickled by name).
    """

    schema: pa.Schema
    partition_keys: tuple[str, ...]
    serialize: Callable[[list[Any]], bytes]  # the items of one group commit -> one spool record
    decode: Callable[[memoryview], list[Any]]  # one spool record -> its groups (or blocks of them)
    group_rows: Callable[[Any], int]
    to_batch: Callable[[Sequence[Any]], pa.RecordBatch]  # groups -> rows in `schema`
    segment_rows: Callable[[Path], int]  # rows in a segment (for the backlog of an adopted one)
    metrics: bool = True  # whether the sink reports to the lake's metrics (the predictions' alone do)


def _group_rows(block: RowBlock) -> int:
    return block.size


PREDICTIONS: Final = Layout(
    schema=ARROW_SCHEMA,
    partition_keys=PARTITION_KEYS,
    serialize=serialize,
    decode=deserialize_blocks,
    group_rows=_group_rows,
    to_batch=to_record_batch,
    segment_rows=segment_rows,
)


@dataclass(frozen=True, slots=True)
class SegmentReport:
    """What a commit did with one segment."""

    segment_id: str
    rows: int  # rows this commit added from it
    bad_bytes: int = 0  # damaged bytes skipped
    bad_records: int = 0  # intact frames whose payload could not be decoded (e.g. an unknown record version)
    already_committed: bool = False
    error: str | None = None

    @property
    def faulty(self) -> bool:
        """True when part of the segment could not be read: it is kept in quarantine."""
        return self.bad_bytes > 0 or self.bad_records > 0


@dataclass(frozen=True, slots=True)
class CommitReport:
    """What one commit did."""

    segments: tuple[SegmentReport, ...]
    snapshot_id: int | None
    seconds: float
    expired_snapshots: int = 0
    expiry_error: str | None = None

    @property
    def rows(self) -> int:
        """Rows added to the table."""
        return sum(s.rows for s in self.segments)


def table_for(config: TableConfig, layout: Layout = PREDICTIONS) -> Table:
    """The process's handle on the table, refreshed."""
    table = _TABLES.get(config)
    if table is None:
        table = _TABLES[config] = load_table(config, schema=layout.schema, partition_keys=layout.partition_keys)
    else:
        table.refresh()
    return table


def read_rows(
    segment_id: str, path: Path, write: Callable[[pa.RecordBatch], None], layout: Layout = PREDICTIONS
) -> SegmentReport:
    """Hand the segment's readable rows to `write`, CHUNK_ROWS at a time, and say what could not be read."""
    read = read_segment(path)
    pending: list[tuple[int, Any]] = []  # (record number, rows)
    rows = pending_rows = 0
    bad: set[int] = set()
    error = None

    def convert() -> None:
        nonlocal rows, pending_rows, error
        try:
            batch = layout.to_batch([group for _, group in pending])
        except (pa.ArrowException, ValueError, TypeError) as exc:  # values the lake's columns cannot hold
            bad.update(number for number, _ in pending)
            error = repr(exc)
        else:
            write(batch)  # a store failing here fails the commit (retried), not the records
            rows += pending_rows
        pending.clear()
        pending_rows = 0

    for number, record in enumerate(read.records):
        try:
            groups = layout.decode(record)
        except (ValueError, KeyError, TypeError) as exc:  # a valid frame holding what this version cannot read
            bad.add(number)
            error = repr(exc)
            continue
        # Part by part: one record holds every request of a group commit (16,000 rows at 32 connections).
        for group in groups:
            pending.append((number, group))
            pending_rows += layout.group_rows(group)
            if pending_rows >= CHUNK_ROWS:
                convert()
    if pending:
        convert()
    # A closed segment was written whole and fsync'd before it was closed (a torn tail is cut off at recovery,
    # before closing): unreadable bytes at its end are damage too.
    return SegmentReport(segment_id, rows, read.bad_bytes + read.torn_bytes, len(bad), error=error)


def commit_segments(
    config: TableConfig, segments: Sequence[tuple[str, str]], layout: Layout = PREDICTIONS
) -> CommitReport:
    """Commit the rows of `segments` ((id, path) pairs) that no snapshot holds yet, in one snapshot.

    The rows are converted and written to the data files a chunk at a time: the committer's memory is bounded by
    a chunk and a row group per partition, whatever the commit's size (the service must fit its ECS task).
    """
    started = time.perf_counter()
    table = table_for(config, layout)
    done = committed_segments(table)
    reports: list[SegmentReport] = []
    ids: list[str] = []
    files = data_files(table, layout.schema)
    try:
        with _collector_paused():
            for segment_id, path in segments:
                if segment_id in done:
                    reports.append(SegmentReport(segment_id, 0, already_committed=True))
                    continue
                report = read_rows(segment_id, Path(path), files.write, layout)
                reports.append(report)
                if report.rows:
                    ids.append(segment_id)
    except BaseException:
        files.discard()
        raise
    snapshot_id = commit_data_files(table, files, ids) if ids else None
    expired, expiry_error = _expire_now_and_then(config, table)
    # The commit's Arrow buffers are freed by now, but the allocators keep them mapped for the next commit; handing
    # them back keeps the committer child small between commits, which is most of the time.
    pa.default_memory_pool().release_unused()
    trim_heap()  # the decoded records' and pyiceberg's manifests' heap
    return CommitReport(tuple(reports), snapshot_id, time.perf_counter() - started, expired, expiry_error)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a commit decodes its records.

    Decoding makes many small containers (a dict and lists per scored request), and each allocation burst runs
    the collector over every live object: with 1-lead requests (a row group per lead) it was three quarters of the
    decoding's CPU (`bench/request_cost.py`: 50 -> 14 us per request). The objects hold no cycles; reference
    counting frees them, and the collector runs again once the commit is written.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _expire_now_and_then(config: TableConfig, table: Table) -> tuple[int, str | None]:
    """Expire old snapshots at most once an interval per process; a failure is reported, never fails the commit."""
    now = time.monotonic()
    if now - _LAST_EXPIRY.get(config, -EXPIRY_INTERVAL_SECONDS) < EXPIRY_INTERVAL_SECONDS:
        return 0, None
    _LAST_EXPIRY[config] = now
    try:
        return expire_snapshots(table, config.snapshot_retention_seconds), None
    except (CommitFailedException, OSError, ValueError) as exc:  # a concurrent commit, the store: next time
        return 0, repr(exc)
