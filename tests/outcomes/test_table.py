"""The outcomes table: beside the predictions in their catalog, partitioned by day, read back deduplicated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from leadscore.lake.schema import PARTITION_KEYS
from leadscore.lake.table import load_table, open_catalog
from leadscore.outcomes.table import (
    OUTCOME_SCHEMA,
    load_outcomes_table,
    outcome_batch,
    outcomes_table_config,
    read_outcomes,
    write_outcomes,
)
from tests.support.lake import local_settings

_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _batch(lead_ids: list[str], received_at: datetime = _AT, request_id: str = "r1") -> pa.RecordBatch:
    n = len(lead_ids)
    return outcome_batch(
        {"lead_id": lead_ids, "outcome": [4] * n, "converted": [True] * n, "occurred_at": [_AT] * n},
        received_at=received_at,
        request_id=request_id,
        source="import",
    )


def test_the_table_shares_the_predictions_catalog(tmp_path: Path) -> None:
    """lead_outcomes is a table of the predictions' catalog and namespace, in a directory beside theirs."""
    settings = local_settings(tmp_path)
    load_table(settings.lake_table_config())
    load_outcomes_table(settings)
    config = outcomes_table_config(settings)
    catalog = open_catalog(settings.lake_table_config())
    names = {name for _, name in catalog.list_tables(settings.database_name)}
    assert names == {settings.table_name, "lead_outcomes"}
    assert Path(config.local_path()).parent == Path(settings.lake_table_config().local_path()).parent


def test_the_table_has_the_contract_columns_and_day_partitions(tmp_path: Path) -> None:
    """Columns are the contract's, in order, with identity partitions on year/month/day of occurred_at."""
    table = load_outcomes_table(local_settings(tmp_path))
    assert [f.name for f in table.schema().fields] == OUTCOME_SCHEMA.names
    assert [table.schema().find_field(f.source_id).name for f in table.spec().fields] == list(PARTITION_KEYS)


def test_the_same_outcome_sent_twice_is_read_once(tmp_path: Path) -> None:
    """Two commits of one outcome (same lead, time, values) read back as one row: the first received."""
    settings = local_settings(tmp_path)
    config = outcomes_table_config(settings)
    write_outcomes(config, _batch(["L1", "L2"]), "c1")
    write_outcomes(config, _batch(["L1"], _AT + timedelta(hours=1), "r2"), "c2")
    rows = read_outcomes(settings)
    assert rows.column("lead_id").to_pylist() == ["L1", "L2"]
    assert rows.column("request_id").to_pylist() == ["r1", "r1"]
    assert load_outcomes_table(settings).scan().to_arrow().num_rows == 3


def test_a_different_stage_is_a_different_outcome(tmp_path: Path) -> None:
    """The id hashes the stage too: the same lead and time at two stages are two outcomes."""
    first = outcome_batch(
        {
            "lead_id": ["L1", "L1"],
            "outcome": [None, None],
            "converted": [False, True],
            "occurred_at": [_AT, _AT],
            "stage": ["demo", "closed_won"],
        },
        received_at=_AT,
        request_id="r",
        source="api",
    )
    assert len(set(first.column("outcome_id").to_pylist())) == 2


def test_reading_without_a_lake_gives_no_rows_and_creates_nothing(tmp_path: Path) -> None:
    """read_outcomes on a lake that does not exist yet is empty and leaves no catalog behind."""
    settings = local_settings(tmp_path)
    assert read_outcomes(settings).num_rows == 0
    assert not (tmp_path / "lake").exists()


def test_partitions_are_the_day_the_outcome_occurred(tmp_path: Path) -> None:
    """year/month/day are those of occurred_at (UTC), not of its receipt."""
    batch = _batch(["L1"], received_at=_AT + timedelta(days=3))
    assert [batch.column(k)[0].as_py() for k in PARTITION_KEYS] == [2026, 11, 20]
