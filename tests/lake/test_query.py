"""DuckDB over the Iceberg table: the current snapshot's live files, under Athena's table name."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.lake import local_settings, scored_rows

from leadscore.lake.compact import forget
from leadscore.lake.query import run_query, table_dataset
from leadscore.lake.sink import LakeSink
from leadscore.lake.table import load_table
from leadscore.model.bundle import Scorer


def _lake(tmp_path: Path, scorer: Scorer, requests: int) -> LakeSink:
    settings = local_settings(tmp_path)
    sink = LakeSink(settings.lake_config())
    sink.start()
    for i in range(requests):
        asyncio.run(sink.record(scored_rows(scorer, 2, f"r{i}")))
        assert sink.wait_idle(30)
    sink.close(10)
    return sink


def test_query_reads_the_table_under_its_athena_name(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """SQL names the table as Athena does and sees every committed row."""
    _lake(tmp_path, tiny_scorer, requests=3)
    config = local_settings(tmp_path).lake_table_config()
    names, rows = run_query(
        load_table(config, create=False), config, "SELECT request_id, count(*) AS n FROM lead_score_dev GROUP BY 1"
    )
    assert names == ["request_id", "n"]
    assert sorted(rows) == [("r0", 2), ("r1", 2), ("r2", 2)]


def test_query_sees_deletes(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Rows deleted by forget are gone from queries (only the current snapshot's files are read)."""
    _lake(tmp_path, tiny_scorer, requests=2)
    config = local_settings(tmp_path).lake_table_config()
    forget(load_table(config), [], ["r0"])
    _, rows = run_query(load_table(config, create=False), config, "SELECT DISTINCT request_id FROM lead_score_dev")
    assert rows == [("r1",)]


def test_the_dataset_has_the_service_schema(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """The dataset handed to DuckDB has every lake column, whatever the files hold."""
    _lake(tmp_path, tiny_scorer, requests=1)
    config = local_settings(tmp_path).lake_table_config()
    dataset = table_dataset(load_table(config, create=False), config)
    assert "engineered_pages_per_session" in dataset.schema.names
    assert dataset.count_rows() == 2
