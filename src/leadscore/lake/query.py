"""Query the lake's Iceberg table with DuckDB under the table name Athena uses.

DuckDB's own Iceberg reader is an extension downloaded at run time (not possible offline), so the table is given
to DuckDB as a pyarrow dataset over exactly the data files of the current snapshot: DuckDB then pushes column
selection and filters down and reads lazily. A snapshot with delete files (Athena's merge-on-read DELETE) is read
through pyiceberg's scan instead, which applies them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import duckdb
import pyarrow.dataset as ds

from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.lake.table import TableConfig, has_delete_files, live_data_files

if TYPE_CHECKING:
    from pyiceberg.table import Table


def _fs_path(uri: str) -> str:
    """A data file's URI as a path for pyarrow's filesystems (file:///x -> /x, s3://b/k -> b/k)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return parsed.path
    if parsed.scheme in ("s3", "s3a"):
        return f"{parsed.netloc}{parsed.path}"
    return uri


def table_dataset(table: Table, config: TableConfig) -> ds.Dataset:
    """The current snapshot's rows as a pyarrow dataset (in the service's schema: missing columns are null)."""
    return ds.dataset(
        [_fs_path(path) for path in live_data_files(table)],
        schema=ARROW_SCHEMA,
        format="parquet",
        filesystem=config.filesystem(),
    )


def run_query(table: Table, config: TableConfig, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `sql` with the lake registered under `config.name`; returns (column names, rows)."""
    connection = duckdb.connect()
    try:
        source: object = table.scan().to_arrow() if has_delete_files(table) else table_dataset(table, config)
        connection.register(config.name, source)
        result = connection.execute(sql)
        names = [d[0] for d in result.description or []]
        return names, result.fetchall()
    finally:
        connection.close()
