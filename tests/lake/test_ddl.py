"""Athena DDL: derived from the lake schema, with partition projection; Parquet files match it."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, ENGINEERED_NAMES
from leadscore.lake.ddl import athena_ddl, projection_properties
from leadscore.lake.records import RowGroup
from leadscore.lake.schema import COLUMNS, athena_columns
from leadscore.lake.sink import LakeConfig, LakeSink
from leadscore.lake.store import open_store
from leadscore.model.bundle import Scorer
from leadscore.scoring import score_columns

ATHENA_OF_PARQUET = {
    "string": "string",
    "large_string": "string",
    "int64": "bigint",
    "int32": "int",
    "double": "double",
    "bool": "boolean",
    "timestamp[us, tz=UTC]": "timestamp",
}


def _ddl_columns(ddl: str) -> list[tuple[str, str]]:
    body = ddl.split("(\n", 1)[1].split("\n)\nPARTITIONED", 1)[0]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"`(\w+)`\s+(\w+) COMMENT", body)]


def test_ddl_lists_every_column_with_its_type() -> None:
    """The DDL has exactly the lake columns, in order, with their Athena types."""
    ddl = athena_ddl("lead_score_prod", "s3://bucket/lake")
    assert _ddl_columns(ddl) == athena_columns()


def test_columns_cover_the_spec() -> None:
    """Every raw input, custom feature and model input has its lower-case column."""
    names = {c.name for c in COLUMNS}
    assert {f"raw_{f.name}" for f in (*CORE_FIELDS, *CUSTOM_FIELDS)} <= names
    assert {f"engineered_{n}" for n in ENGINEERED_NAMES} <= names
    assert {"request_id", "lead_id", "model_version", "timestamp", "score", "confidence", "features_used",
            "processing_time_ms", "prediction_time_ms", "is_test", "environment"} <= names  # fmt: skip
    assert {f"prob_{s}" for s in range(1, 6)} <= names
    assert all(n == n.lower() for n in names)
    assert len(names) == len(COLUMNS)


def test_ddl_uses_partition_projection_so_no_repair_is_needed() -> None:
    """Partitions year/month/day are projected from the location template."""
    ddl = athena_ddl("t", "s3://bucket/lake/")
    assert "PARTITIONED BY (`year` int, `month` int, `day` int)" in ddl
    assert "STORED AS PARQUET" in ddl
    assert "LOCATION 's3://bucket/lake/'" in ddl
    props = projection_properties("s3://bucket/lake/")
    assert props["projection.enabled"] == "true"
    assert props["storage.location.template"] == "s3://bucket/lake/year=${year}/month=${month}/day=${day}"
    assert props["projection.month.digits"] == props["projection.day.digits"] == "2"
    for key, value in props.items():
        assert f"'{key}'='{value}'" in ddl


def test_parquet_files_match_the_ddl(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Schema contract: each column of a written Parquet file has the name and type the DDL declares."""
    payload = ScoreRequest.model_validate({"leads": [EXAMPLE_LEAD, {}]})
    columns = to_columns(payload.leads)
    batch = score_columns(tiny_scorer, columns, 2, datetime.now(UTC))
    store = open_store(str(tmp_path / "lake"))
    sink = LakeSink(LakeConfig(spool_dir=tmp_path / "spool"), store)
    sink.start()
    asyncio.run(sink.record(RowGroup("r", batch, columns, 1.0, is_test=False, environment="dev")))
    sink.close(10)
    (key,) = store.list()
    schema = pq.read_schema(store.path(key))
    file_columns = [(f.name, ATHENA_OF_PARQUET[str(f.type)]) for f in schema]
    assert file_columns == _ddl_columns(athena_ddl("t", "s3://b/p"))
