"""Athena DDL of the Iceberg table: derived from the lake schema, literals escaped as Athena's DDL reads them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.support.lake import local_settings, scored_rows

from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, ENGINEERED_NAMES
from leadscore.lake.ddl import athena_ddl, hive_string
from leadscore.lake.schema import COLUMNS, athena_columns
from leadscore.lake.sink import LakeSink
from leadscore.lake.table import load_table
from leadscore.model.bundle import Scorer

# Iceberg type -> Athena's name for it in DDL.
ATHENA_OF_ICEBERG = {
    "string": "string",
    "long": "bigint",
    "int": "int",
    "double": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "list<string>": "array<string>",
    "list<double>": "array<double>",
}


def _ddl_columns(ddl: str) -> list[tuple[str, str]]:
    body = ddl.split("(\n", 1)[1].split("\n)\nPARTITIONED", 1)[0]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"`(\w+)`\s+([\w<>]+) COMMENT", body)]


def test_ddl_lists_every_column_with_its_type() -> None:
    """The DDL has exactly the lake columns, in order, with their Athena types."""
    ddl = athena_ddl("leadscore_prod", "lead_score_prod", "s3://bucket/lake")
    assert _ddl_columns(ddl) == athena_columns()


def test_columns_cover_the_spec() -> None:
    """Every raw input, custom feature and model input has its lower-case column, plus year/month/day."""
    names = {c.name for c in COLUMNS}
    assert {f"raw_{f.name}" for f in (*CORE_FIELDS, *CUSTOM_FIELDS)} <= names
    assert {f"engineered_{n}" for n in ENGINEERED_NAMES} <= names
    assert {"request_id", "lead_id", "model_version", "timestamp", "score", "confidence", "features_used",
            "processing_time_ms", "prediction_time_ms", "is_test", "environment"} <= names  # fmt: skip
    assert {"year", "month", "day"} <= names
    assert {f"prob_{s}" for s in range(1, 6)} <= names
    assert all(n == n.lower() for n in names)
    assert len(names) == len(COLUMNS)


def test_ddl_creates_an_iceberg_table_partitioned_by_day() -> None:
    """The statement is Athena's Iceberg CREATE TABLE, partitioned by the year/month/day columns."""
    ddl = athena_ddl("db", "t", "s3://bucket/lake/")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS `db`.`t` (")
    assert "PARTITIONED BY (`year`, `month`, `day`)" in ddl
    assert "LOCATION 's3://bucket/lake/'" in ddl
    assert "'table_type'='ICEBERG'" in ddl
    assert "EXTERNAL" not in ddl


def test_string_literals_escape_quotes_with_a_backslash() -> None:
    """A quote in a comment is written as Athena's DDL parser (Hive's rules) reads it: backslash, not doubling."""
    assert hive_string("Caller's id") == "'Caller\\'s id'"
    assert hive_string("a\\b") == "'a\\\\b'"
    ddl = athena_ddl("db", "t", "s3://b/p")
    assert "''" not in ddl.replace("COMMENT ''", "")
    assert "Caller\\'s lead id" in ddl


def test_the_written_table_matches_the_ddl(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Schema contract: the Iceberg table the service writes has the columns and types the DDL declares."""
    settings = local_settings(tmp_path)
    sink = LakeSink(settings.lake_config())
    sink.start()
    asyncio.run(sink.record(scored_rows(tiny_scorer, 2, "r")))
    sink.close(10)
    schema = load_table(settings.lake_table_config(), create=False).schema()
    table_columns = [(f.name, ATHENA_OF_ICEBERG[str(f.field_type)]) for f in schema.fields]
    assert table_columns == _ddl_columns(athena_ddl("db", "t", "s3://b/p"))
