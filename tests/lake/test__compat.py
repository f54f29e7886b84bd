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
