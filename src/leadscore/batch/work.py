"""Scoring one chunk, in one of the run's scoring threads.

A run loads the model bundle once; each task is a chunk of input rows and comes back as the core's output for
them (row numbers of the whole input) and, for a recorded run, their lake rows. The scoring core is imported
lazily: the CLI's other commands and `--help` do not load the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from leadscore.columnar import ModelBundle


@dataclass(frozen=True, slots=True)
class Task:
    """One chunk to score."""

    start: int  # 0-based input row of the chunk's first row
    rows: pa.Table | pa.RecordBatch
    as_of: datetime
    explain: bool
    run_id: str | None  # set when the run is recorded
    environment: str


@dataclass(frozen=True, slots=True)
class Done:
    """A scored chunk."""

    start: int
    scored: pa.Table  # the core's output, `row` counted over the whole input
    lake: pa.Table | None


def load_model(bundle: Path | None) -> ModelBundle:
    """The model bundle the core scores with (None: the packaged one)."""
    from leadscore.columnar import resolve_bundle  # noqa: PLC0415 - the model stack loads only to score

    return resolve_bundle(bundle)


def score_chunk(task: Task, model: ModelBundle) -> Done:
    """The core's output for a chunk, its rows numbered over the whole input, and its lake rows when recorded."""
    from leadscore.columnar import score_table  # noqa: PLC0415 - see the module docstring

    scored = score_table(task.rows, bundle=model, as_of=task.as_of, explain=task.explain)
    row = scored.schema.get_field_index("row")
    scored = scored.set_column(row, scored.schema.field(row), pc.add(scored["row"], pa.scalar(task.start, pa.int64())))
    if task.run_id is None:
        return Done(task.start, scored, None)
    from leadscore.batch.record import lake_rows  # noqa: PLC0415 - pyiceberg loads for a recorded run only

    return Done(task.start, scored, lake_rows(task.rows, scored, task.run_id, task.environment))
