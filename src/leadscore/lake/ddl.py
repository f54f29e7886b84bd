r"""Athena DDL for the lake's Iceberg table, derived from the lake schema.

Athena reads the table through the Glue catalog; this statement creates the same table (same columns, same
partitioning) for an account where the CDK stack did not. Athena parses DDL with Hive's rules: string literals
escape a quote with a backslash (`'Caller\'s'`), not by doubling it.
"""

from __future__ import annotations

from leadscore.lake.schema import COLUMNS, PARTITION_KEYS


def hive_string(text: str) -> str:
    """`text` as a single-quoted string literal of Athena's DDL."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def athena_ddl(database: str, table: str, location: str) -> str:
    """`CREATE TABLE` (Iceberg) for the lake at `location`."""
    width = max(len(c.name) for c in COLUMNS)
    columns = ",\n".join(
        f"  `{c.name}`{' ' * (width - len(c.name))} {c.athena} COMMENT {hive_string(c.comment)}" for c in COLUMNS
    )
    partitions = ", ".join(f"`{k}`" for k in PARTITION_KEYS)
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` (\n{columns}\n)\n"
        f"PARTITIONED BY ({partitions})\n"
        f"LOCATION {hive_string(location.rstrip('/') + '/')}\n"
        "TBLPROPERTIES (\n"
        "  'table_type'='ICEBERG',\n"
        "  'format'='parquet',\n"
        "  'write_compression'='zstd'\n"
        ");\n"
    )
