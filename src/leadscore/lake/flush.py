"""One commit of spool segments to the Iceberg table: read them, skip what is committed, append the rest.

Runs in the sink's child process (so building Arrow columns and Parquet files never holds a request worker's GIL)
or in the flusher thread. It is safe to run again for the same segments after any failure or crash: a segment
already named by a snapshot is skipped, so a row reaches the table once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from leadscore.lake.records import RowGroup, deserialize_groups, to_record_batch
from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.lake.spool import read_segment
from leadscore.lake.table import TableConfig, append_segments, committed_segments, expire_snapshots, load_table

if TYPE_CHECKING:
    from pyiceberg.table import Table

CHUNK_ROWS: Final = 5_000
EXPIRY_INTERVAL_SECONDS: Final = 3600.0
# The table, loaded once per process that commits (refreshed before each commit), and when this process last
# expired its old snapshots.
_TABLES: dict[TableConfig, Table] = {}
_LAST_EXPIRY: dict[TableConfig, float] = {}


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


def table_for(config: TableConfig) -> Table:
    """The process's handle on the table, refreshed."""
    table = _TABLES.get(config)
    if table is None:
        table = _TABLES[config] = load_table(config)
    else:
        table.refresh()
    return table


def read_rows(segment_id: str, path: Path) -> tuple[list[pa.RecordBatch], SegmentReport]:
    """The segment's readable rows as Arrow batches, and what could not be read."""
    read = read_segment(path)
    batches: list[pa.RecordBatch] = []
    pending: list[tuple[int, RowGroup]] = []  # (record number, rows)
    rows = pending_rows = 0
    bad: set[int] = set()
    error = None

    def convert() -> None:
        nonlocal rows, pending_rows, error
        try:
            batches.append(to_record_batch([group for _, group in pending]))
            rows += pending_rows
        except (pa.ArrowException, ValueError, TypeError) as exc:  # values the lake's columns cannot hold
            bad.update(number for number, _ in pending)
            error = repr(exc)
        pending.clear()
        pending_rows = 0

    for number, record in enumerate(read.records):
        try:
            groups = deserialize_groups(record)
        except (ValueError, KeyError, TypeError) as exc:  # a valid frame holding what this version cannot read
            bad.add(number)
            error = repr(exc)
            continue
        pending.extend((number, group) for group in groups)
        pending_rows += sum(group.size for group in groups)
        if pending_rows >= CHUNK_ROWS:
            convert()
    if pending:
        convert()
    # A closed segment was written whole and fsync'd before it was closed (a torn tail is cut off at recovery,
    # before closing): unreadable bytes at its end are damage too.
    return batches, SegmentReport(segment_id, rows, read.bad_bytes + read.torn_bytes, len(bad), error=error)


def commit_segments(config: TableConfig, segments: Sequence[tuple[str, str]]) -> CommitReport:
    """Commit the rows of `segments` ((id, path) pairs) that no snapshot holds yet, in one snapshot."""
    started = time.perf_counter()
    table = table_for(config)
    done = committed_segments(table)
    reports: list[SegmentReport] = []
    batches: list[pa.RecordBatch] = []
    ids: list[str] = []
    for segment_id, path in segments:
        if segment_id in done:
            reports.append(SegmentReport(segment_id, 0, already_committed=True))
            continue
        segment_batches, report = read_rows(segment_id, Path(path))
        reports.append(report)
        if report.rows:
            batches.extend(segment_batches)
            ids.append(segment_id)
    snapshot_id = None
    if batches:
        snapshot_id = append_segments(table, pa.Table.from_batches(batches, schema=ARROW_SCHEMA), ids)
    expired, expiry_error = _expire_now_and_then(config, table)
    del batches
    # The commit's Arrow buffers (every column of up to 100,000 rows, and the Parquet pages) are freed by now, but
    # the allocator keeps them mapped for the next commit; handing them back keeps the committer child small
    # between commits, which is most of the time (the whole service must fit its ECS task's memory).
    pa.default_memory_pool().release_unused()
    return CommitReport(tuple(reports), snapshot_id, time.perf_counter() - started, expired, expiry_error)


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
