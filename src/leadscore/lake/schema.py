"""The layout of a lake row, derived from the feature spec: Arrow schema, Athena types, DDL.

Columns are only ever appended: the table's schema is evolved to this one by name at start-up (Iceberg schema
evolution), so a rename would start a new column and leave history under the old name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pyarrow as pa

from leadscore.features.explained import EXPLAIN_COLUMNS
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, ENGINEERED_FEATURES, SCORES, Kind


@dataclass(frozen=True, slots=True)
class Column:
    """One lake column: its Arrow type (Parquet file) and Athena type (DDL)."""

    name: str
    arrow: pa.DataType
    athena: str
    comment: str


# Iceberg `timestamp` (no zone): the type Athena's and Glue's Iceberg tables use. Values are UTC by convention.
_TIMESTAMP: Final = pa.timestamp("us")
_RAW_TYPES: Final[dict[Kind, tuple[pa.DataType, str]]] = {
    Kind.CATEGORY: (pa.string(), "string"),
    Kind.TEXT: (pa.string(), "string"),
    Kind.INT: (pa.int64(), "bigint"),
    Kind.FLOAT: (pa.float64(), "double"),
    Kind.BOOL: (pa.bool_(), "boolean"),
    Kind.TIMESTAMP: (_TIMESTAMP, "timestamp"),
}


def _columns() -> tuple[Column, ...]:
    meta = [
        Column("request_id", pa.string(), "string", "Request id (test traffic: see is_test)."),
        Column("lead_id", pa.string(), "string", "Caller's lead id (null when none was given; see lead_index)."),
        Column("lead_index", pa.int32(), "int", "Position of the lead in its request (0-based)."),
        Column("model_version", pa.string(), "string", "Version of the model that scored the lead."),
        Column("timestamp", _TIMESTAMP, "timestamp", "Scoring time, UTC, microseconds."),
        Column("score", pa.int32(), "int", "Score 1..5."),
        Column("confidence", pa.float64(), "double", "Probability of the score."),
        *(Column(f"prob_{s}", pa.float64(), "double", f"Probability of score {s}.") for s in SCORES),
        Column("features_used", pa.int32(), "int", "Raw inputs present."),
        Column("processing_time_ms", pa.float64(), "double", "Server time for the whole request."),
        Column("prediction_time_ms", pa.float64(), "double", "Model time for the batch."),
        Column("is_test", pa.bool_(), "boolean", "True for smoke and load-test traffic."),
        Column("environment", pa.string(), "string", "dev or prod."),
        Column("api_key_id", pa.string(), "string", "Id of the API key that sent the request (never the key)."),
    ]
    raw = [
        Column(f"raw_{f.name}", _RAW_TYPES[f.kind][0], _RAW_TYPES[f.kind][1], f.description)
        for f in (*CORE_FIELDS, *CUSTOM_FIELDS)
    ]
    engineered = [
        Column(
            f"engineered_{f.name}",
            pa.int32() if f.integer else pa.float64(),
            "int" if f.integer else "double",
            f.description,
        )
        for f in ENGINEERED_FEATURES
    ]
    # Where a row came from: the API's online traffic or a `leadscore score --record` batch run.
    origin = [
        Column("source", pa.string(), "string", "online (the API) or batch (a `leadscore score --record` run)."),
        Column("run_id", pa.string(), "string", "Id of the batch run that scored the row (null for online traffic)."),
    ]
    partition = [
        Column(key, pa.int32(), "int", f"UTC {key} of the scoring time (the table is partitioned by it).")
        for key in PARTITION_KEYS
    ]
    return (*meta, *raw, *engineered, *partition, *origin, *_explain_columns())


# --- Explain columns (issue 13): the reasons and drivers stored with a prediction when they were computed. ---
# Appended after the partition columns: a table created before them gets them at the end too (schema evolution).
_ATHENA_LISTS: Final = {pa.list_(pa.string()): "array<string>", pa.list_(pa.float64()): "array<double>"}


def _explain_columns() -> list[Column]:
    athena = {pa.bool_(): "boolean", pa.float64(): "double", **_ATHENA_LISTS}
    return [Column(c.name, c.arrow, athena[c.arrow], c.description) for c in EXPLAIN_COLUMNS]


# --- End of the explain columns. ---


PARTITION_KEYS: Final = ("year", "month", "day")
SOURCES: Final = ("online", "batch")
COLUMNS: Final = _columns()
ARROW_SCHEMA: Final = pa.schema([pa.field(c.name, c.arrow) for c in COLUMNS])


def athena_columns() -> list[tuple[str, str]]:
    """(name, Athena type) of every column, in file order."""
    return [(c.name, c.athena) for c in COLUMNS]
