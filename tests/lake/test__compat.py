"""The lake's uses of library internals, pinned to the versions they were written for."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from tests.support.lake import local_settings, scored_rows

from leadscore.lake import _compat
from leadscore.lake.records import to_record_batch
from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.lake.table import load_table
from leadscore.model.bundle import Scorer


def test_pyiceberg_is_a_version_the_writer_was_written_for() -> None:
    """A pyiceberg upgrade fails here first: check the internals `_compat` calls still take the same arguments."""
    assert version("pyiceberg").startswith(_compat.PYICEBERG_WRITER_VERSIONS)


def test_write_data_files_writes_partitioned_files_under_the_table(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """The wrapped writer returns data files of the table's partitions, written below its location."""
    config = local_settings(tmp_path).lake_table_config()
    table = load_table(config)
    rows = pa.Table.from_batches([to_record_batch([scored_rows(tiny_scorer, 3, "r")])])
    files = list(_compat.write_data_files(table.transaction(), rows))
    assert sum(f.record_count for f in files) == 3
    assert all(f.file_path.startswith(config.table_location() + "/data/year=") for f in files)


def _partitions(files: list[DataFile]) -> list[tuple[int, int, int, int]]:
    """(year, month, day, rows) of each data file, sorted."""
    return sorted((*(int(v) for v in f.partition), f.record_count) for f in files)


def test_streamed_rows_of_one_day_are_the_files_pyiceberg_writes(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Rows sharing their day skip pyiceberg's split and give the partition and rows its own writer gives."""
    table = load_table(local_settings(tmp_path).lake_table_config())
    at = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    batch = to_record_batch([scored_rows(tiny_scorer, 4, "a", at), scored_rows(tiny_scorer, 3, "b", at)])
    files = _compat.StreamingDataFiles(table.metadata, table.io, ARROW_SCHEMA)
    files.write(batch)
    ours = files.finish()
    theirs = list(
        _dataframe_to_data_files(
            table_metadata=table.metadata, df=pa.Table.from_batches([batch]), io=table.io, write_uuid=uuid.uuid4()
        )
    )
    assert _partitions(ours) == _partitions(theirs) == [(2026, 3, 14, 7)]
    assert pq.read_table(urlparse(ours[0].file_path).path).equals(pq.read_table(urlparse(theirs[0].file_path).path))


def test_streamed_data_files_carry_the_table_field_ids(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Files written batch by batch hold every row once, with the Iceberg field ids pyiceberg's writer gives."""
    config = local_settings(tmp_path).lake_table_config()
    table = load_table(config)
    files = _compat.StreamingDataFiles(table.metadata, table.io, ARROW_SCHEMA)
    for request in ("a", "b"):
        files.write(to_record_batch([scored_rows(tiny_scorer, 3, request)]))
    (data_file,) = files.finish()
    assert data_file.record_count == 6
    written = pq.read_schema(urlparse(data_file.file_path).path)
    ids = {f.name: int(f.metadata[b"PARQUET:field_id"]) for f in written}
    assert ids == {f.name: f.field_id for f in table.schema().fields}


def test_checksum_policy_is_set_for_a_custom_endpoint_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a custom S3 endpoint the SDK is asked for checksums only when required; for AWS nothing is set."""
    for key in ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
        monkeypatch.delenv(key, raising=False)
    _compat.s3_checksums_when_required(None, None)
    assert "AWS_REQUEST_CHECKSUM_CALCULATION" not in os.environ
    _compat.s3_checksums_when_required(None, "http://127.0.0.1:9000")
    assert os.environ["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"


def test_streamed_rows_of_two_days_go_to_one_file_per_day(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """A batch whose rows span two days is split by day when streamed, as pyiceberg's writer splits it."""
    table = load_table(local_settings(tmp_path).lake_table_config())
    files = _compat.StreamingDataFiles(table.metadata, table.io, ARROW_SCHEMA)
    files.write(to_record_batch([scored_rows(tiny_scorer, 3, "a", datetime(2026, 3, 14, 23, 59, tzinfo=UTC))]))
    files.write(
        to_record_batch(
            [
                scored_rows(tiny_scorer, 2, "b", datetime(2026, 3, 14, 23, 59, tzinfo=UTC)),
                scored_rows(tiny_scorer, 4, "c", datetime(2026, 3, 15, 0, 1, tzinfo=UTC)),
            ]
        )
    )
    assert _partitions(files.finish()) == [(2026, 3, 14, 5), (2026, 3, 15, 4)]


def test_streamed_files_dictionary_encode_text_columns_only(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """In the committer's files, text columns have dictionary pages and number columns none."""
    table = load_table(local_settings(tmp_path).lake_table_config())
    files = _compat.StreamingDataFiles(table.metadata, table.io, ARROW_SCHEMA)
    files.write(to_record_batch([scored_rows(tiny_scorer, 20, "a")]))
    (data_file,) = files.finish()
    group = pq.ParquetFile(urlparse(data_file.file_path).path).metadata.row_group(0)
    dictionary = {
        group.column(i).path_in_schema: group.column(i).dictionary_page_offset is not None
        for i in range(group.num_columns)
    }
    assert dictionary["model_version"] is True
    assert dictionary["raw_industry"] is True
    assert dictionary["confidence"] is False
    assert dictionary["engineered_log_account_revenue"] is False


def test_a_transaction_replays_its_metadata_once_per_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of `table_metadata` in one state replay the updates once; staging an update replays them again."""
    from pyiceberg.table import update as pyiceberg_update  # noqa: PLC0415 - the function the property calls

    table = load_table(local_settings(tmp_path).lake_table_config())
    calls: list[int] = []
    real = pyiceberg_update.update_table_metadata

    def counted(base, updates, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(updates))
        return real(base, updates, *args, **kwargs)

    monkeypatch.setattr(pyiceberg_update, "update_table_metadata", counted)
    tx = _compat.transaction(table)
    first = [tx.table_metadata for _ in range(10)]
    assert calls == [0]
    assert all(m is first[0] for m in first)
    tx.set_properties({"leadscore.test": "1"})
    assert tx.table_metadata.properties["leadscore.test"] == "1"
    assert tx.table_metadata is tx.table_metadata
    assert calls == [0, 1]


def test_a_commit_through_the_cached_transaction_is_a_plain_commit(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """An append committed through `transaction` gives the table the snapshot and rows a plain transaction gives."""
    table = load_table(local_settings(tmp_path).lake_table_config())
    rows = pa.Table.from_batches([to_record_batch([scored_rows(tiny_scorer, 3, "r")])])
    for make in (table.transaction, lambda: _compat.transaction(table)):
        with make() as tx, tx.update_snapshot(snapshot_properties={"leadscore.k": "v"}).fast_append() as append:
            for data_file in _compat.write_data_files(tx, rows):
                append.append_data_file(data_file)
    snapshots = table.snapshots()
    assert len(snapshots) == 2
    assert snapshots[1].parent_snapshot_id == snapshots[0].snapshot_id
    assert [s.summary.additional_properties["leadscore.k"] for s in snapshots] == ["v", "v"]
    assert table.scan().to_arrow().num_rows == 6


def test_a_stale_transaction_sees_the_refreshed_table(tmp_path: Path) -> None:
    """The cache is keyed on the table's metadata object: after a refresh the transaction reads the new metadata."""
    config = local_settings(tmp_path).lake_table_config()
    table = load_table(config)
    tx = _compat.transaction(table)
    before = tx.table_metadata
    with load_table(config).transaction() as other:
        other.set_properties({"leadscore.other": "1"})
    table.refresh()
    assert tx.table_metadata is not before
    assert tx.table_metadata.properties["leadscore.other"] == "1"
