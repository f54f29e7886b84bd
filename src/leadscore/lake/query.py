"""Query the lake (local or S3) with DuckDB under the table name Athena uses.

The lake is registered as a pyarrow dataset (hive partitions year/month/day), which works with any DuckDB
version and any store pyarrow reaches; no DuckDB extension download is needed.
Files replaced by a finished compaction are left out, so a reader never counts rows twice while a
compaction is deleting its inputs.
"""

from __future__ import annotations

from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from leadscore.lake.schema import ARROW_SCHEMA, PARTITION_KEYS
from leadscore.lake.store import Store, replaced_by

PARTITION_SCHEMA: Final = pa.schema([pa.field(k, pa.int32()) for k in PARTITION_KEYS])


def visible_keys(store: Store, prefix: str = "") -> list[str]:
    """Parquet files a reader should see: everything except inputs of a finished compaction."""
    keys = [k for k in store.list(prefix) if k.endswith(".parquet")]
    hidden = {old for key in keys for old in replaced_by(store, key)}
    return [k for k in keys if k not in hidden]


def lake_dataset(store: Store) -> ds.Dataset:
    """The lake as one dataset with year/month/day columns from the paths."""
    schema = pa.unify_schemas([ARROW_SCHEMA, PARTITION_SCHEMA])
    return ds.dataset(
        [store.path(k) for k in visible_keys(store)],
        schema=schema,
        format="parquet",
        filesystem=store.fs,
        partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
        partition_base_dir=store.root,
    )


def run_query(store: Store, table: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `sql` with the lake registered as `table`; returns (column names, rows)."""
    connection = duckdb.connect()
    try:
        connection.register(table, lake_dataset(store))
        result = connection.execute(sql)
        names = [d[0] for d in result.description or []]
        return names, result.fetchall()
    finally:
        connection.close()
