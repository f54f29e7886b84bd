"""Athena DDL for the lake, derived from the lake schema: exact types and partition projection.

With projection the partitions are computed from the template, so `MSCK REPAIR TABLE` is never needed.
The IaC's Glue table uses `projection_properties` and `athena_columns` from here too.
"""

from __future__ import annotations

from typing import Final

from leadscore.lake.schema import COLUMNS, PARTITION_KEYS

FIRST_YEAR: Final = 2024
LAST_YEAR: Final = 2099


def location_template(location: str) -> str:
    """`storage.location.template` for a table at `location` (s3://bucket/prefix)."""
    return location.rstrip("/") + "/year=${year}/month=${month}/day=${day}"


def projection_properties(location: str) -> dict[str, str]:
    """Table properties for partition projection over year/month/day (zero-padded month and day)."""
    return {
        "projection.enabled": "true",
        "projection.year.type": "integer",
        "projection.year.range": f"{FIRST_YEAR},{LAST_YEAR}",
        "projection.month.type": "integer",
        "projection.month.range": "1,12",
        "projection.month.digits": "2",
        "projection.day.type": "integer",
        "projection.day.range": "1,31",
        "projection.day.digits": "2",
        "storage.location.template": location_template(location),
        "parquet.compression": "ZSTD",
        "classification": "parquet",
    }


def athena_ddl(table: str, location: str) -> str:
    """`CREATE EXTERNAL TABLE` for the lake at `location`."""
    width = max(len(c.name) for c in COLUMNS)
    columns = ",\n".join(
        f"  `{c.name}`{' ' * (width - len(c.name))} {c.athena} COMMENT '{c.comment.replace(chr(39), chr(39) * 2)}'"
        for c in COLUMNS
    )
    partitions = ", ".join(f"`{k}` int" for k in PARTITION_KEYS)
    properties = ",\n".join(f"  '{k}'='{v}'" for k, v in projection_properties(location).items())
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{table}` (\n{columns}\n)\n"
        f"PARTITIONED BY ({partitions})\n"
        "STORED AS PARQUET\n"
        f"LOCATION '{location.rstrip('/')}/'\n"
        f"TBLPROPERTIES (\n{properties}\n);\n"
    )
