"""The outcomes' durable path: the lake's spool and flusher, with a layout of their own (Arrow IPC records).

An acknowledged outcome is fsync'd in its spool (a directory below the lake's spool root, so a live task adopts a
dead one's outcomes too) and committed to the outcomes table in the background, like a prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa

from leadscore.lake.flush import Layout
from leadscore.lake.schema import PARTITION_KEYS
from leadscore.lake.sink import LakeSink
from leadscore.lake.spool import read_segment
from leadscore.outcomes.table import OUTCOME_SCHEMA, outcomes_lake_config, prepare_catalog

if TYPE_CHECKING:
    from leadscore.config import Settings


def serialize(batches: list[pa.RecordBatch]) -> bytes:
    """One spool record: the outcomes of a group commit as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, OUTCOME_SCHEMA) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return bytes(sink.getvalue())


def decode(record: memoryview) -> list[pa.RecordBatch]:
    """The outcome batches of one spool record (in this version's schema; ValueError when they cannot be)."""
    table: pa.Table = pa.ipc.open_stream(pa.py_buffer(bytes(record))).read_all()
    batches: list[pa.RecordBatch] = table.select(OUTCOME_SCHEMA.names).cast(OUTCOME_SCHEMA).to_batches()
    return batches


def batch_rows(batch: pa.RecordBatch) -> int:
    """Rows in one batch."""
    return int(batch.num_rows)


def to_batch(batches: Sequence[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of every row."""
    table = pa.Table.from_batches(list(batches), schema=OUTCOME_SCHEMA).combine_chunks()
    return table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=OUTCOME_SCHEMA)


def segment_rows(path: Path) -> int:
    """Rows in a segment's readable records."""
    rows = 0
    for record in read_segment(path).records:
        try:
            rows += sum(b.num_rows for b in decode(record))
        except (pa.ArrowException, ValueError, KeyError):
            continue
    return rows


OUTCOMES: Final = Layout(
    schema=OUTCOME_SCHEMA,
    partition_keys=PARTITION_KEYS,
    serialize=serialize,
    decode=decode,
    group_rows=batch_rows,
    to_batch=to_batch,
    segment_rows=segment_rows,
    metrics=False,
)


def open_outcomes_sink(settings: Settings) -> LakeSink:
    """The outcomes sink of `settings` (not started)."""
    config = outcomes_lake_config(settings)
    prepare_catalog(config.table)
    return LakeSink(config, OUTCOMES)
