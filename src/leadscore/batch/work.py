"""Scoring one chunk, in one of the run's scoring threads.

A run loads the model bundle once; each task is a chunk of input rows and comes back as the core's output for
them (row numbers of the whole input) and, for a recorded run, their lake rows. The scoring core is imported
lazily: the CLI's other commands and `--help` do not load the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from leadscore.columnar import ModelBundle

# Rows the core scores at once within a chunk: its working arrays (every field as float64, the model's matrix,
# the probabilities) are held per scoring thread, so a slice smaller than a chunk lowers the run's peak memory
# at no measurable cost in speed (`bench/batch.py` prints both).
SLICE_ROWS: Final = 32_768


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

    rows = task.rows
    parts = [
        score_table(rows.slice(offset, SLICE_ROWS), bundle=model, as_of=task.as_of, explain=task.explain)
        for offset in range(0, max(rows.num_rows, 1), SLICE_ROWS)
    ]
    scored = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    # The core numbers each slice's rows from 0: numbered here over the whole input.
    row = scored.schema.get_field_index("row")
    numbers = pa.array(np.arange(task.start, task.start + scored.num_rows, dtype=np.int64))
    scored = scored.set_column(row, scored.schema.field(row), numbers)
    if task.run_id is None:
        return Done(task.start, scored, None)
    from leadscore.batch.record import lake_rows  # noqa: PLC0415 - pyiceberg loads for a recorded run only

    return Done(task.start, scored, lake_rows(task.rows, scored, task.run_id, task.environment))
