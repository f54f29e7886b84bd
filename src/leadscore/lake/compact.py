"""Merge a day's small Parquet files into one, with no row lost or duplicated.

Steps, each safe to crash in and re-run:
1. finish an earlier compaction: delete inputs that a present compacted file lists as replaced;
2. write the merged rows as `part-compacted-<digest of input names>.parquet` (same inputs, same key), its
   footer listing the inputs it replaces; readers that honour the list (`leadscore lake query`) never see
   both the merged file and its inputs;
3. delete the inputs.
Athena reads every file under the partition: between steps 2 and 3 (the time to delete the inputs, well
under a second for a day) an Athena reader could count rows twice; run compaction off-peak.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.lake.schema import ARROW_SCHEMA, PARQUET_OPTIONS
from leadscore.lake.store import PARTITION_FORMAT, REPLACES_KEY, Store, replaced_by
from leadscore.telemetry.logging import get_logger

log = get_logger("leadscore.lake.compact")


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What a compaction did."""

    partition: str
    input_files: int
    rows: int
    output_key: str | None


def compact_day(store: Store, day: date) -> CompactionResult:
    """Compact the partition of `day`."""
    partition = PARTITION_FORMAT.format(year=day.year, month=day.month, day=day.day)
    keys = [k for k in store.list(partition) if k.endswith(".parquet")]
    for key in keys:
        for stale in replaced_by(store, key):
            if stale in keys:
                store.delete(stale)
    keys = [k for k in store.list(partition) if k.endswith(".parquet")]
    if len(keys) < 2:
        return CompactionResult(partition, len(keys), 0, None)

    tables = [pq.read_table(store.path(k), filesystem=store.fs, schema=ARROW_SCHEMA) for k in keys]
    merged = pa.concat_tables(tables).sort_by([("timestamp", "ascending"), ("request_id", "ascending")])
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    output = f"{partition}/part-compacted-{digest}.parquet"
    table = merged.replace_schema_metadata({REPLACES_KEY: json.dumps(keys).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **PARQUET_OPTIONS)
    store.put(output, buffer.getvalue())
    for key in keys:
        if key != output:
            store.delete(key)
    log.info("lake_compacted", partition=partition, input_files=len(keys), rows=merged.num_rows, output=output)
    return CompactionResult(partition, len(keys), merged.num_rows, output)
