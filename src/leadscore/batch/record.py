"""A batch run's predictions in the lake: rows with `source = 'batch'` and the run's id, a commit per span of chunks.

Each commit names its run and input rows in its snapshot summary (as the online flusher names its spool segments),
so running the same `--run-id` again skips the chunks already recorded: a row of a run reaches the table once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.errors import LeadscoreError
from leadscore.features.encode import NUMERIC_INPUTS, TEXT_INPUTS, TIMESTAMP_INPUTS
from leadscore.features.spec import INPUT_FIELDS, Kind
from leadscore.lake.schema import ARROW_SCHEMA, PARTITION_KEYS
from leadscore.lake.table import TableConfig, commit_files, data_files, load_table, set_properties

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from leadscore.lake._compat import StreamingDataFiles

RUN_PROPERTY: Final = "leadscore.batch-run"
ROWS_PROPERTY: Final = "leadscore.batch-rows"  # "start-end": 0-based input rows start..end-1
_RUN_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_KIND: Final = {f.name: f.kind for f in INPUT_FIELDS}
_WRITE_ROWS: Final = 8_192  # rows handed to the data files' writer at a time


class RunConflict(LeadscoreError):
    """The run id was recorded with other chunk boundaries: the rows cannot be matched to skip them."""


def new_run_id(now: datetime) -> str:
    """A fresh run id: the start time and a random suffix."""
    return f"batch-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def check_run_id(run_id: str) -> str:
    """`run_id` when it is a usable id (letters, digits, `.`, `_`, `:`, `-`; at most 128), else a LeadscoreError."""
    if not _RUN_ID.match(run_id):
        raise LeadscoreError(f"run id {run_id!r} must be letters, digits, '.', '_', ':' or '-' (at most 128)")
    return run_id


def _raw_columns(rows: pa.Table | pa.RecordBatch) -> tuple[dict[str, pa.Array], pa.Array]:
    """The lake's `raw_<field>` columns, read and normalised by the core as it scores, and `features_used`."""
    from leadscore.columnar import read_leads  # noqa: PLC0415 - in the workers only (see leadscore.batch.work)

    leads = read_leads(rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])).leads
    n = leads.size
    used = np.zeros(n, dtype=np.int32)
    arrays: dict[str, pa.Array] = {}
    for j, name in enumerate(NUMERIC_INPUTS):
        values = leads.numeric[j]
        missing = np.isnan(values)
        used += ~missing
        kind = _KIND[name]
        if kind is Kind.FLOAT:
            arrays[name] = pa.array(values, mask=missing)
        else:
            filled = np.where(missing, 0, values)
            arrays[name] = pa.array(
                filled.astype(np.int64) if kind is Kind.INT else filled.astype(np.bool_), mask=missing
            )
    for k, name in enumerate(TIMESTAMP_INPUTS):
        seconds = leads.timestamps[k]
        missing = np.isnan(seconds)
        used += ~missing
        micros = np.round(np.where(missing, 0, seconds) * 1e6).astype(np.int64)
        arrays[name] = pa.array(micros, pa.int64(), mask=missing).cast(pa.timestamp("us"))
    for name in TEXT_INPUTS:
        column = leads.text[name]
        missing = column.indices < 0
        used += ~missing
        indices = pa.array(np.where(missing, 0, column.indices).astype(np.int32), mask=missing)
        arrays[name] = pa.DictionaryArray.from_arrays(indices, pa.array(column.values, pa.string())).cast(pa.string())
    return arrays, pa.array(used)


def lake_rows(rows: pa.Table | pa.RecordBatch, scored: pa.Table, run_id: str, environment: str) -> pa.Table:
    """The lake rows of a scored chunk (rejected rows are no predictions: left out), in the lake's schema.

    `rows` is the chunk as read, `scored` the core's output for it. The lake's per-class probabilities,
    engineered inputs and timings are not part of the core's output: null for batch rows.
    """
    n = rows.num_rows
    arrays: dict[str, pa.Array] = {
        "request_id": pa.array([run_id] * n, pa.string()),
        "lead_id": scored["lead_id"].combine_chunks(),
        "lead_index": scored["row"].combine_chunks().cast(pa.int32()),
        "model_version": scored["model_version"].combine_chunks(),
        "timestamp": scored["scored_at"].combine_chunks().cast(pa.timestamp("us")),
        "score": scored["score"].combine_chunks().cast(pa.int32()),
        "confidence": scored["confidence"].combine_chunks(),
        "is_test": pa.array([False] * n, pa.bool_()),
        "environment": pa.array([environment] * n, pa.string()),
        "source": pa.array(["batch"] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
    }
    raw, arrays["features_used"] = _raw_columns(rows)
    for name, column in raw.items():
        arrays[f"raw_{name}"] = column.cast(ARROW_SCHEMA.field(f"raw_{name}").type)
    for key, part in zip(PARTITION_KEYS, (pc.year, pc.month, pc.day), strict=True):
        arrays[key] = part(arrays["timestamp"]).cast(pa.int32())
    # Lake columns named as the core's output columns (the explain columns, with --explain) come from it.
    for f in ARROW_SCHEMA:
        if f.name not in arrays and f.name in scored.column_names:
            arrays[f.name] = scored[f.name].combine_chunks().cast(f.type)
    columns = [arrays.get(f.name, pa.nulls(n, f.type)) for f in ARROW_SCHEMA]
    table = pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)
    return table.filter(pc.is_valid(arrays["score"]))


def _parse_ranges(text: str | None) -> list[tuple[int, int]]:
    ranges = []
    for part in (text or "").split(","):
        if part:
            start, _, end = part.partition("-")
            ranges.append((int(start), int(end)))
    return ranges


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Touching and overlapping ranges as one: a finished run is recorded as `0-N`, whatever its chunks."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _format_ranges(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{s}-{e}" for s, e in ranges)


@dataclass
class Recorder:
    """Appends a run's chunks to the lake's table, skipping the rows the same run id recorded before.

    The input rows a run holds are kept in a table property (`leadscore.batch-run.<id>`, merged ranges such as
    `0-1000000`) set in the same commit as the rows, so the record is exact and outlives snapshot expiry; each
    commit's snapshot summary also names the run and its rows, as the online flusher names its segments.

    Consecutive chunks share a commit until it spans `commit_rows` input rows (None: a commit per chunk): a run reads
    small chunks (memory) and still makes few commits and files, with the boundaries of a run that read one chunk
    per commit. Their rows stream into the commit's data files as they come; `finish()` commits the last ones.
    """

    config: TableConfig
    run_id: str
    commit_rows: int | None = None
    rows: int = 0  # rows this run added
    skipped_rows: int = 0  # rows a previous run with the same id had recorded
    _done: list[tuple[int, int]] = field(default_factory=list)
    _table: Table | None = None
    _open: _OpenCommit | None = None

    @property
    def _property(self) -> str:
        return f"{RUN_PROPERTY}.{self.run_id}"

    def open(self) -> None:
        """Load (or create) the table and read which input rows of the run it holds."""
        self._table = load_table(self.config)
        self._done = _parse_ranges(self._table.properties.get(self._property))

    def add(self, start: int, end: int, rows: pa.Table) -> None:
        """Record the lake rows of input rows start..end-1 unless the run recorded them before (chunks in order)."""
        if self._table is None:
            self.open()
        assert self._table is not None  # noqa: S101 - set by open()
        if any(s <= start and end <= e for s, e in self._done):
            self.finish()  # a commit never spans rows recorded before
            self.skipped_rows += rows.num_rows
            return
        if any(s < end and start < e for s, e in self._done):
            raise RunConflict(
                f"run {self.run_id} recorded part of input rows {start}..{end - 1} only: rerun it with the "
                "--chunk-rows it was recorded with, or give a new --run-id"
            )
        if self._open is None:
            self._table.refresh()
            self._open = _OpenCommit(start, data_files(self._table, ARROW_SCHEMA))
        commit = self._open
        try:
            for batch in rows.to_batches(max_chunksize=_WRITE_ROWS):
                commit.files.write(batch)
        except BaseException:
            self.discard()
            raise
        commit.end, commit.rows = end, commit.rows + rows.num_rows
        if self.commit_rows is None or commit.end - commit.start >= self.commit_rows:
            self.finish()

    def finish(self) -> None:
        """Commit the rows added since the last commit (nothing when there are none)."""
        commit, self._open = self._open, None
        if commit is None or self._table is None:
            return
        done = _merged([*self._done, (commit.start, commit.end)])
        summary = {RUN_PROPERTY: self.run_id, ROWS_PROPERTY: f"{commit.start}-{commit.end}"}
        recorded = {self._property: _format_ranges(done)}
        if commit.rows:
            # The service's streaming writer: pyiceberg's `append` splits a chunk by partition and converts it whole.
            commit_files(self._table, commit.files, summary, recorded)
        else:  # every row of these chunks was rejected: no data files, the rows are still the run's
            commit.files.discard()
            set_properties(self._table, recorded)
        self._done = done
        self.rows += commit.rows

    def discard(self) -> None:
        """Drop the rows added since the last commit, and their files (a failed or interrupted run)."""
        commit, self._open = self._open, None
        if commit is not None:
            commit.files.discard()


@dataclass
class _OpenCommit:
    start: int  # input rows start..end-1 of the chunks added to it
    files: StreamingDataFiles
    end: int = 0
    rows: int = 0  # lake rows written (rejected rows are none)
