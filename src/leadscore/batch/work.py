"""Scoring one chunk, in a pool worker (or in the calling process with one worker).

A worker loads the model bundle once, when the pool starts it; each task is a chunk of input rows and comes back
as the core's output for them (row numbers of the whole input) and, for a recorded run, their lake rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from leadscore.batch.io import ParquetPart, read_part

if TYPE_CHECKING:
    from leadscore.columnar import ModelBundle


@dataclass(frozen=True, slots=True)
class Task:
    """One chunk to score."""

    start: int  # 0-based input row of the chunk's first row
    batch: pa.RecordBatch | None  # the rows, or where to read them (`part`)
    as_of: datetime
    explain: bool
    run_id: str | None  # set when the run is recorded
    environment: str
    part: ParquetPart | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """A scored chunk."""

    start: int
    scored: pa.Table  # the core's output, `row` counted over the whole input
    lake: pa.Table | None


# The bundle of this worker process, loaded once by `start_worker` (a pool's initializer has nowhere else to put
# it); the calling process keeps its own when it scores in-process. The module imports the scoring core lazily:
# the process that reads and writes the files need not hold the model stack's memory.
_BUNDLE: dict[str, ModelBundle] = {}


def load_model(bundle: Path | None) -> ModelBundle:
    """The model bundle the core scores with (None: the packaged one)."""
    from leadscore.columnar import resolve_bundle  # noqa: PLC0415 - the model stack loads in the workers only

    return resolve_bundle(bundle)


def start_worker(bundle: Path | None) -> None:
    """Pool initializer: load the bundle once for every chunk this worker scores."""
    _BUNDLE["model"] = load_model(bundle)


def run_task(task: Task) -> Done:
    """Score a chunk in a pool worker."""
    return score_chunk(task, _BUNDLE["model"])


def score_chunk(task: Task, model: ModelBundle) -> Done:
    """The core's output for a chunk, its rows numbered over the whole input, and its lake rows when recorded."""
    from leadscore.batch.record import lake_rows  # noqa: PLC0415 - the model stack loads in the workers only
    from leadscore.columnar import score_table  # noqa: PLC0415

    rows = task.batch if task.batch is not None else read_part(task.part) if task.part is not None else None
    if rows is None:
        raise ValueError("a task needs its rows or a part of a file")
    scored = score_table(rows, bundle=model, as_of=task.as_of, explain=task.explain)
    row = scored.schema.get_field_index("row")
    scored = scored.set_column(row, scored.schema.field(row), pc.add(scored["row"], pa.scalar(task.start, pa.int64())))
    lake = lake_rows(rows, scored, task.run_id, task.environment) if task.run_id is not None else None
    return Done(task.start, scored, lake)
