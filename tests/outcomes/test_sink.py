"""The outcomes' durable path: spooled like predictions, committed to the outcomes table, adopted after a crash."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from leadscore.lake.sink import LakeSink
from leadscore.lake.spool import OUTCOMES_SUBDIR
from leadscore.model.bundle import Scorer
from leadscore.outcomes.sink import decode, open_outcomes_sink, serialize
from leadscore.outcomes.table import load_outcomes_table, outcome_batch, read_outcomes
from tests.support.lake import local_settings, scored_rows, table_rows

_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _batch(lead_ids: list[str]) -> pa.RecordBatch:
    n = len(lead_ids)
    return outcome_batch(
        {"lead_id": lead_ids, "outcome": [5] * n, "converted": [True] * n, "occurred_at": [_AT] * n},
        received_at=_AT,
        request_id="r",
        source="api",
    )


def test_a_spool_record_reads_back_as_its_batches() -> None:
    """serialize/decode keep every row and value."""
    batches = [_batch(["L1", "L2"]), _batch(["L3"])]
    decoded = decode(memoryview(serialize(batches)))
    assert pa.Table.from_batches(decoded).equals(pa.Table.from_batches(batches))


def test_recorded_outcomes_reach_the_outcomes_table(tmp_path: Path) -> None:
    """Outcomes recorded through the sink are committed to lead_outcomes once the sink closes."""
    settings = local_settings(tmp_path)
    sink = open_outcomes_sink(settings)
    sink.start()
    asyncio.run(sink.record(_batch(["L1", "L2"])))
    asyncio.run(sink.record(_batch(["L3"])))
    assert sink.close(30)
    assert read_outcomes(settings).column("lead_id").to_pylist() == ["L1", "L2", "L3"]
    assert sink.config.spool_dir == settings.spool_dir / OUTCOMES_SUBDIR


def test_a_dead_process_outcomes_are_adopted_by_the_next(tmp_path: Path) -> None:
    """Outcomes left on a spool by a process that never committed them are committed by the next one."""
    settings = local_settings(tmp_path, lake_commit_interval_seconds=3600.0, lake_segment_max_age_seconds=3600.0)
    first = open_outcomes_sink(settings)
    first.start()
    asyncio.run(first.record(_batch(["L1"])))
    first.close(0)  # the flusher gets no time: the row stays on the spool, unlocked
    second = open_outcomes_sink(local_settings(tmp_path))
    second.start()
    assert second.close(30)
    assert read_outcomes(settings).column("lead_id").to_pylist() == ["L1"]


def test_the_predictions_sink_leaves_the_outcomes_spool_alone(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Both sinks on one spool root: each commits its own rows to its own table."""
    settings = local_settings(tmp_path)
    predictions = LakeSink(settings.lake_config())
    outcomes = open_outcomes_sink(settings)
    predictions.start()
    outcomes.start()
    asyncio.run(predictions.record(scored_rows(tiny_scorer, 2, "p")))
    asyncio.run(outcomes.record(_batch(["L0"])))
    assert predictions.close(30)
    assert outcomes.close(30)
    assert table_rows(settings).num_rows == 2
    assert load_outcomes_table(settings).scan().to_arrow().num_rows == 1
