"""Lake helpers for tests: scored rows in the lake's row type, settings from a server's env, and table readers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.api.recording import lake_rows
from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns
from leadscore.config import Settings
from leadscore.lake.records import RowGroup
from leadscore.lake.table import TableConfig, live_data_files, load_table
from leadscore.model.bundle import Scorer
from leadscore.scoring import score_columns


def scored_rows(scorer: Scorer, n: int, request_id: str, at: datetime | None = None) -> RowGroup:
    """`n` scored example leads (lead ids L0..), as the API hands them to the lake."""
    payload = ScoreRequest.model_validate({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L{i}"} for i in range(n)]})
    columns = to_columns(payload.leads)
    batch = score_columns(scorer, columns, n, at or datetime.now(UTC))
    return lake_rows(
        batch, columns, request_id=request_id, processing_ms=1.0, is_test=False, environment="dev", api_key_id=None
    )


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The Settings a server started with `env` reads (LEADSCORE_* variables only)."""
    fields = {k.removeprefix("LEADSCORE_").lower(): v for k, v in env.items() if k.startswith("LEADSCORE_")}
    fields = {k: json.loads(v) if k == "test_request_patterns" else v for k, v in fields.items()}
    return Settings(**fields)


def table_config(source: Settings | Mapping[str, str]) -> TableConfig:
    """The table of a Settings object or of a server's environment."""
    settings = source if isinstance(source, Settings) else settings_from_env(source)
    return settings.lake_table_config()


def table_rows(source: Settings | Mapping[str, str] | TableConfig) -> pa.Table:
    """Every row of the lake's table, read through Iceberg (the current snapshot)."""
    config = source if isinstance(source, TableConfig) else table_config(source)
    return load_table(config, create=False).scan().to_arrow()


def live_file_rows(source: Settings | Mapping[str, str] | TableConfig) -> pa.Table:
    """Every row of every live data file, read as plain Parquet (what an engine that lists files would see)."""
    config = source if isinstance(source, TableConfig) else table_config(source)
    table = load_table(config, create=False)
    fs = config.filesystem()
    parts = []
    for uri in live_data_files(table):
        parsed = urlparse(uri)
        path = parsed.path if parsed.scheme == "file" else f"{parsed.netloc}{parsed.path}"
        parts.append(pq.read_table(path, filesystem=fs, columns=["request_id", "lead_id", "lead_index"]))
    if not parts:
        return pa.table({"request_id": pa.array([], pa.string()), "lead_id": pa.array([], pa.string())})
    return pa.concat_tables(parts)


def row_counts(table: pa.Table) -> Counter[tuple[str, str]]:
    """How often each (request_id, lead_id) occurs."""
    return Counter(zip(table.column("request_id").to_pylist(), table.column("lead_id").to_pylist(), strict=True))


def duplicated(counts: Counter[Any]) -> int:
    """Rows beyond the first of each key."""
    return sum(c - 1 for c in counts.values() if c > 1)


def local_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with a local lake and spool under `tmp_path`, quick retries and commits."""
    values: dict[str, Any] = {
        "spool_dir": tmp_path / "spool",
        "lake_uri": str(tmp_path / "lake"),
        "lake_commit_in_subprocess": False,
        "lake_retry_initial_seconds": 0.01,
        "lake_retry_max_seconds": 0.05,
        "lake_commit_interval_seconds": 0.0,
        **overrides,
    }
    return Settings(**values)
