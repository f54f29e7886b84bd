"""The lake sink with a local store: spool -> Parquet -> store, retries, capacity, deterministic keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns
from leadscore.errors import ServiceUnavailable
from leadscore.lake.records import RowGroup, serialize
from leadscore.lake.sink import LakeConfig, LakeSink, partition_tables, segment_keys, segment_parquet
from leadscore.lake.spool import Backlog, ClosedSegment, Spool
from leadscore.lake.store import Store, open_store
from leadscore.model.bundle import Scorer
from leadscore.scoring import score_columns


def _rows(scorer: Scorer, n: int, request_id: str, at: datetime | None = None) -> RowGroup:
    payload = ScoreRequest.model_validate({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L{i}"} for i in range(n)]})
    columns = to_columns(payload.leads)
    batch = score_columns(scorer, columns, n, at or datetime.now(UTC))
    return RowGroup(request_id, batch, columns, 1.0, is_test=False, environment="dev")


def _read_all(store: Store) -> pa.Table:
    return pa.concat_tables([pq.read_table(store.path(k)) for k in store.list()])


class FlakyStore(Store):
    """A local store whose puts fail a given number of times first (a storage outage)."""

    def __init__(self, root: Path, failures: int) -> None:
        inner = open_store(str(root))
        super().__init__(inner.fs, inner.root, inner.uri)
        self.failures = failures
        self.attempts = 0

    def put(self, key: str, data: bytes) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise OSError("connection refused")
        super().put(key, data)


def _sink(tmp_path: Path, store: Store, **kwargs: object) -> LakeSink:
    config = LakeConfig(spool_dir=tmp_path / "spool", retry_initial_seconds=0.01, retry_max_seconds=0.05, **kwargs)  # type: ignore[arg-type]
    sink = LakeSink(config, store)
    sink.start()
    return sink


def test_recorded_rows_reach_the_store_as_parquet(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Rows recorded and flushed are in the store, one Parquet file per segment and day."""
    store = open_store(str(tmp_path / "lake"))
    sink = _sink(tmp_path, store)
    asyncio.run(sink.record(_rows(tiny_scorer, 3, "a")))
    asyncio.run(sink.record(_rows(tiny_scorer, 2, "b")))
    assert sink.close(10)
    table = _read_all(store)
    assert sorted(zip(table.column("request_id").to_pylist(), table.column("lead_id").to_pylist(), strict=True)) == [
        ("a", "L0"), ("a", "L1"), ("a", "L2"), ("b", "L0"), ("b", "L1"),
    ]  # fmt: skip
    assert all(k.startswith("year=") and "/part-w-" in k for k in store.list())
    assert not list((tmp_path / "spool").iterdir())


def test_rows_are_partitioned_by_their_utc_day(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A segment spanning midnight UTC becomes one file per day, under year=/month=/day=."""
    store = open_store(str(tmp_path / "lake"))
    sink = _sink(tmp_path, store)
    asyncio.run(sink.record(_rows(tiny_scorer, 1, "late", datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC))))
    asyncio.run(sink.record(_rows(tiny_scorer, 1, "early", datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC))))
    sink.close(10)
    keys = store.list()
    assert [k.rsplit("/", 1)[0] for k in keys] == ["year=2026/month=01/day=31", "year=2026/month=02/day=01"]


def test_uploads_are_retried_until_the_store_is_back(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """While puts fail the rows wait in the spool (backlog visible); they arrive once the store recovers."""
    store = FlakyStore(tmp_path / "lake", failures=3)
    sink = _sink(tmp_path, store)
    asyncio.run(sink.record(_rows(tiny_scorer, 4, "r")))
    sink.rotate()
    assert sink.wait_idle(10)
    status = sink.status()
    assert status["upload_failures"] == 3
    assert status["backlog_rows"] == 0
    assert store.attempts == 4
    assert _read_all(store).num_rows == 4
    sink.close(5)


def test_backlog_is_reported_while_the_store_is_down(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Health sees backlog rows, bytes and the last error while uploads fail."""
    store = FlakyStore(tmp_path / "lake", failures=10_000)
    sink = _sink(tmp_path, store)
    asyncio.run(sink.record(_rows(tiny_scorer, 2, "r")))
    sink.rotate()
    for _ in range(100):
        if sink.status()["upload_failures"]:
            break
        asyncio.run(asyncio.sleep(0.02))
    status = sink.status()
    assert status["backlog_rows"] == 2
    assert status["backlog_bytes"] > 0
    assert "connection refused" in status["last_error"]
    assert not sink.close(0.3)
    assert list((tmp_path / "spool").glob("w-*/*.seg"))


def test_full_spool_refuses_new_work_with_503(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """At the spool cap, capacity checks raise 503 with Retry-After: nothing is acknowledged past it."""
    store = FlakyStore(tmp_path / "lake", failures=10_000)
    sink = _sink(tmp_path, store, spool_max_bytes=1024)
    sink.check_capacity()
    asyncio.run(sink.record(_rows(tiny_scorer, 5, "r")))
    with pytest.raises(ServiceUnavailable) as err:
        sink.check_capacity()
    assert err.value.headers["Retry-After"]
    assert sink.status()["spool_full"] is True
    sink.close(0.1)


def test_segment_keys_are_deterministic(tiny_scorer: Scorer) -> None:
    """The same segment always maps to the same object keys (a retry overwrites, never duplicates)."""
    from leadscore.lake.records import to_record_batch  # noqa: PLC0415

    table = pa.Table.from_batches([to_record_batch([_rows(tiny_scorer, 2, "r", datetime(2026, 5, 6, tzinfo=UTC))])])
    first = [k for k, _ in segment_keys("w-abc-000000000007", table)]
    assert first == [k for k, _ in segment_keys("w-abc-000000000007", table)]
    assert first == ["year=2026/month=05/day=06/part-w-abc-000000000007.parquet"]
    assert [p for p, _ in partition_tables(table)] == ["year=2026/month=05/day=06"]


def test_restart_recovers_what_a_crash_left_in_the_spool(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Segments of a process that died are uploaded by the next one, first."""
    store = FlakyStore(tmp_path / "lake", failures=10_000)
    crashed = _sink(tmp_path, store)
    asyncio.run(crashed.record(_rows(tiny_scorer, 3, "before-crash")))
    crashed._spool.directory.unlock()  # type: ignore[union-attr]  # what a dead process leaves
    healthy = _sink(tmp_path, open_store(str(tmp_path / "lake")))
    assert healthy.wait_idle(10)
    healthy.close(5)
    table = _read_all(healthy.store)
    assert table.column("request_id").to_pylist() == ["before-crash"] * 3


def test_async_durability_acknowledges_without_waiting(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """In async mode `record` returns before the write; the rows still reach the store."""
    store = open_store(str(tmp_path / "lake"))
    sink = _sink(tmp_path, store, durability="async")
    asyncio.run(sink.record(_rows(tiny_scorer, 2, "fast")))
    sink.close(10)
    assert _read_all(store).num_rows == 2


def test_large_segments_are_converted_in_bounded_chunks(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A segment bigger than one conversion chunk becomes one file with every row, in several row groups."""
    closed: list[ClosedSegment] = []
    spool: Spool[RowGroup] = Spool(tmp_path, serialize, closed.append, Backlog(), 1 << 20, 60.0)
    for i in range(7):
        spool.append(_rows(tiny_scorer, 3, f"r{i}", datetime(2026, 5, 6, tzinfo=UTC)), rows=3).result(timeout=10)
    spool.close()
    files, rows = segment_parquet("w-x-000000000001", closed[0].path, chunk_rows=5)
    assert rows == 21
    (data,) = files.values()
    parquet = pq.ParquetFile(pa.BufferReader(data))
    assert parquet.metadata.num_rows == 21
    assert parquet.metadata.num_row_groups > 1


def test_retried_upload_of_a_compacted_segment_adds_no_rows(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A segment re-uploaded after its day was compacted (crash recovery) is skipped: no row twice."""
    import shutil  # noqa: PLC0415
    from datetime import date  # noqa: PLC0415

    from leadscore.lake.compact import compact_day  # noqa: PLC0415

    day = datetime(2026, 5, 6, 12, tzinfo=UTC)
    closed: list[ClosedSegment] = []
    spool: Spool[RowGroup] = Spool(tmp_path / "spool", serialize, closed.append, Backlog(), 1, 60.0)
    for i in range(2):
        spool.append(_rows(tiny_scorer, 2, f"r{i}", day), rows=2).result(timeout=10)
    spool.close()
    store = open_store(str(tmp_path / "lake"))
    sink = LakeSink(LakeConfig(spool_dir=tmp_path / "unused"), store)
    saved = tmp_path / "saved.seg"
    shutil.copy(closed[0].path, saved)
    for segment in closed:
        sink.upload_segment(segment)
    compact_day(store, date(2026, 5, 6))
    assert len(store.list()) == 1

    assert sink.upload_segment(ClosedSegment(saved, closed[0].segment_id)) == []
    assert len(store.list()) == 1
    assert _read_all(store).num_rows == 4


def test_segments_can_be_converted_in_a_child_process(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """With conversion in a child process (the server's default) rows still reach the store, all of them."""
    store = open_store(str(tmp_path / "lake"))
    sink = _sink(tmp_path, store, convert_in_subprocess=True)
    asyncio.run(sink.record(_rows(tiny_scorer, 3, "child")))
    assert sink.close(60)
    assert _read_all(store).column("request_id").to_pylist() == ["child"] * 3


def test_converter_process_runs_below_the_workers_priority(tmp_path: Path) -> None:
    """The Parquet converter is a separate process niced below the request workers."""
    import os  # noqa: PLC0415

    from leadscore.lake.sink import CONVERTER_NICE, _start_converter  # noqa: PLC0415

    converter = _start_converter()
    try:
        child_pid, child_nice = converter.submit(_pid_and_nice).result(timeout=60)
    finally:
        converter.shutdown()
    assert child_pid != os.getpid()
    assert child_nice == min(19, os.nice(0) + CONVERTER_NICE)


def _pid_and_nice() -> tuple[int, int]:
    import os  # noqa: PLC0415

    return os.getpid(), os.nice(0)
