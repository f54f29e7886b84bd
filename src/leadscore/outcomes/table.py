"""The outcomes table: an Iceberg table beside the predictions, in the same catalog, partitioned by day.

Written through the lake's own machinery (spool + flusher for the API, one commit for an import) and read back
deduplicated: the same outcome sent twice has the same `outcome_id` (a hash of what it says), and `read_outcomes`
keeps the first one received. The writers do not look up ids already present: two tasks may commit the same outcome
at once and no check before a commit can stop that, while a check would cost every commit a scan of the table.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from leadscore.lake.schema import PARTITION_KEYS
from leadscore.lake.spool import OUTCOMES_SUBDIR
from leadscore.lake.table import LakeNotFound, TableConfig, append_segments, load_table

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from leadscore.config import Settings
    from leadscore.lake.sink import LakeConfig

# Iceberg `timestamp` (no zone), UTC by convention: as the predictions' timestamps (Athena's Iceberg type).
_TIMESTAMP: Final = pa.timestamp("us")
OUTCOME_SCHEMA: Final = pa.schema(
    [
        pa.field("outcome_id", pa.string(), nullable=False),
        pa.field("lead_id", pa.string(), nullable=False),
        pa.field("outcome", pa.int32()),
        pa.field("converted", pa.bool_()),
        pa.field("occurred_at", _TIMESTAMP, nullable=False),
        pa.field("received_at", _TIMESTAMP, nullable=False),
        pa.field("source", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("request_id", pa.string()),
        *(pa.field(key, pa.int32(), nullable=False) for key in PARTITION_KEYS),
    ]
)
COMMENTS: Final = {
    "outcome_id": "Hash of lead_id, occurred_at, outcome, converted and stage: the same outcome sent twice has one id.",
    "lead_id": "The lead's id, as scored.",
    "outcome": "Outcome 1..5 on the score's scale (null when only converted was given).",
    "converted": "Whether the lead converted (null when only outcome was given).",
    "occurred_at": "When the outcome happened, UTC.",
    "received_at": "When the service received it, UTC.",
    "source": "Where the outcome came from (api, import, or the caller's own name).",
    "stage": "The CRM stage, as the caller named it.",
    "request_id": "Request (or import run) that brought it.",
    "year": "Year of occurred_at (partition).",
    "month": "Month of occurred_at (partition).",
    "day": "Day of occurred_at (partition).",
}
LOCAL_TABLE_NAME: Final = "lead_outcomes"
_SEPARATOR: Final = "\x1f"


def table_name(settings: Settings) -> str:
    """`lead_outcomes` in a local (SQL) catalog, `lead_outcomes_<env>` in Glue (one database per environment)."""
    return LOCAL_TABLE_NAME if settings.lake_catalog == "sql" else f"{LOCAL_TABLE_NAME}_{settings.env.value}"


def _sibling(location: str, name: str) -> str:
    """`name` beside the predictions' location (data/lake -> data/lead_outcomes, s3://b/p -> s3://b/lead_outcomes).

    Beside, not below: a tool that cleans files no snapshot reads under the predictions' location would otherwise
    delete the outcomes' files.
    """
    parsed = urlparse(location.rstrip("/"))
    if parsed.scheme in ("", "file"):
        return posixpath.join(posixpath.dirname(parsed.path), name)
    return f"{parsed.scheme}://{parsed.netloc}{posixpath.dirname(parsed.path).rstrip('/')}/{name}"


def outcomes_table_config(settings: Settings) -> TableConfig:
    """The outcomes table: the predictions' catalog, namespace and store, its own name and location."""
    base = settings.lake_table_config()
    catalog_uri = base.catalog_uri
    if base.catalog == "sql" and catalog_uri is None and base.is_local:
        catalog_uri = base.sql_uri()  # the predictions' SQLite catalog (a file in their directory)
    name = table_name(settings)
    return replace(base, name=name, location=_sibling(base.location, name), catalog_uri=catalog_uri)


def outcomes_lake_config(settings: Settings) -> LakeConfig:
    """The outcomes sink's configuration: the lake's knobs, its own spool directory below the lake's and its table.

    Outcomes are few and small: their commits run in the flusher thread, not in a second committer process per worker.
    """
    return replace(
        settings.lake_config(),
        spool_dir=settings.spool_dir / OUTCOMES_SUBDIR,
        table=outcomes_table_config(settings),
        commit_in_subprocess=False,
    )


def open_outcomes_table(config: TableConfig, create: bool = True) -> Table:
    """The outcomes table at `config`, created and evolved (`create`), else LakeNotFound when it is missing."""
    sqlite = _sqlite_file(config)
    if not create and sqlite is not None and not sqlite.is_file():
        raise LakeNotFound(f"no lake catalog at {sqlite}")
    if create:
        prepare_catalog(config)
    return load_table(config, create, schema=OUTCOME_SCHEMA, partition_keys=PARTITION_KEYS)


def prepare_catalog(config: TableConfig) -> None:
    """Make the directory of a local SQLite catalog (the predictions' directory, perhaps not made yet)."""
    sqlite = _sqlite_file(config)
    if sqlite is not None:
        sqlite.parent.mkdir(parents=True, exist_ok=True)


def _sqlite_file(config: TableConfig) -> Path | None:
    """The file of a SQLite catalog (opening a missing one would create it), else None."""
    prefix = "sqlite:///"
    uri = config.catalog_uri
    return Path(uri.removeprefix(prefix)) if config.catalog == "sql" and uri and uri.startswith(prefix) else None


def load_outcomes_table(settings: Settings, create: bool = True) -> Table:
    """The outcomes table of `settings` (a pyiceberg Table)."""
    return open_outcomes_table(outcomes_table_config(settings), create)


def outcome_ids(
    lead_ids: Sequence[str],
    occurred_at: Sequence[datetime],
    outcomes: Sequence[int | None],
    converted: Sequence[bool | None],
    stages: Sequence[str | None],
) -> list[str]:
    """The stable id of each outcome: a hash of what it says (lead, when, outcome, converted, stage)."""
    ids = []
    for lead_id, moment, outcome, conv, stage in zip(lead_ids, occurred_at, outcomes, converted, stages, strict=True):
        text = _SEPARATOR.join(
            (
                lead_id,
                _utc_naive(moment).isoformat(timespec="microseconds"),
                "" if outcome is None else str(outcome),
                "" if conv is None else str(conv).lower(),
                stage or "",
            )
        )
        ids.append(hashlib.sha256(text.encode()).hexdigest()[:32])
    return ids


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def outcome_batch(
    columns: Mapping[str, Sequence[Any]], *, received_at: datetime, request_id: str, source: str
) -> pa.RecordBatch:
    """Valid outcomes (columns lead_id, outcome, converted, occurred_at, and optional source/stage) as table rows.

    A row's own `source` wins over the default `source`.
    """
    n = len(columns["lead_id"])
    occurred = [_utc_naive(m) for m in columns["occurred_at"]]
    stages = list(columns.get("stage") or [None] * n)
    sources = [s or source for s in columns.get("source") or [None] * n]
    occurred_array = pa.array(occurred, _TIMESTAMP)
    arrays: dict[str, pa.Array] = {
        "outcome_id": pa.array(
            outcome_ids(columns["lead_id"], occurred, columns["outcome"], columns["converted"], stages), pa.string()
        ),
        "lead_id": pa.array(columns["lead_id"], pa.string()),
        "outcome": pa.array(columns["outcome"], pa.int32()),
        "converted": pa.array(columns["converted"], pa.bool_()),
        "occurred_at": occurred_array,
        "received_at": pa.array([_utc_naive(received_at)] * n, _TIMESTAMP),
        "source": pa.array(sources, pa.string()),
        "stage": pa.array(stages, pa.string()),
        "request_id": pa.array([request_id] * n, pa.string()),
    }
    for key, part in zip(PARTITION_KEYS, (pc.year, pc.month, pc.day), strict=True):
        arrays[key] = part(occurred_array).cast(pa.int32())
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in OUTCOME_SCHEMA], schema=OUTCOME_SCHEMA)


def distinct(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The first row of each `outcome_id` in `batch` (the same outcome twice in one request or file is kept once)."""
    first: dict[str, int] = {}
    for index, outcome_id in enumerate(batch.column("outcome_id").to_pylist()):
        first.setdefault(outcome_id, index)
    return batch if len(first) == batch.num_rows else batch.take(pa.array(list(first.values()), pa.int64()))


def write_outcomes(config: TableConfig, rows: pa.Table | pa.RecordBatch, commit_id: str) -> int | None:
    """Append `rows` (in OUTCOME_SCHEMA) in one commit named `commit_id`; returns the snapshot id.

    For a caller that commits at once (an import); the API spools its outcomes and commits them in the background.
    """
    table = open_outcomes_table(config)
    data = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
    return append_segments(table, data.cast(OUTCOME_SCHEMA), [commit_id])


def empty_outcomes() -> pa.Table:
    """No outcomes, in the table's schema."""
    return OUTCOME_SCHEMA.empty_table()


def deduplicate(rows: pa.Table) -> pa.Table:
    """One row per `outcome_id`: the first received; ordered by lead and occurred_at."""
    if rows.num_rows == 0:
        return rows
    ordered = rows.take(pc.sort_indices(rows, sort_keys=[("outcome_id", "ascending"), ("received_at", "ascending")]))
    ids = ordered.column("outcome_id").combine_chunks()
    first = pc.not_equal(ids[1:], ids[:-1])
    keep = pa.concat_arrays([pa.array([True]), first.combine_chunks() if isinstance(first, pa.ChunkedArray) else first])
    unique = ordered.filter(keep)
    return unique.take(pc.sort_indices(unique, sort_keys=[("lead_id", "ascending"), ("occurred_at", "ascending")]))


def read_outcomes(settings: Settings) -> pa.Table:
    """Every outcome in the table, each once (deduplicated by `outcome_id`); empty when there is no table yet."""
    config = outcomes_table_config(settings)
    try:
        table = open_outcomes_table(config, create=False)
    except LakeNotFound:
        return empty_outcomes()
    return deduplicate(table.scan().to_arrow().select(OUTCOME_SCHEMA.names).cast(OUTCOME_SCHEMA))
