"""The lake's uses of library internals, pinned to the versions they were written for."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from tests.support.lake import local_settings, scored_rows

from leadscore.lake import _compat
from leadscore.lake.records import to_record_batch
from leadscore.lake.table import load_table
from leadscore.model.bundle import Scorer


def test_pyiceberg_is_a_version_the_writer_was_written_for() -> None:
    """A pyiceberg upgrade fails here first: check `_dataframe_to_data_files` still takes the same arguments."""
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


def test_rows_of_one_day_are_written_as_pyiceberg_writes_them(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Rows sharing their day skip pyiceberg's split and give the files, partition and rows its own writer gives."""
    table = load_table(local_settings(tmp_path).lake_table_config())
    at = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    rows = pa.Table.from_batches(
        [to_record_batch([scored_rows(tiny_scorer, 4, "a", at), scored_rows(tiny_scorer, 3, "b", at)])]
    )
    ours = list(_compat.write_data_files(table.transaction(), rows))
    theirs = list(
        _dataframe_to_data_files(table_metadata=table.metadata, df=rows, io=table.io, write_uuid=uuid.uuid4())
    )
    assert _partitions(ours) == _partitions(theirs) == [(2026, 3, 14, 7)]
    assert pq.read_table(ours[0].file_path).equals(pq.read_table(theirs[0].file_path))


def test_rows_of_two_days_are_split_by_day(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Rows of different days still go to one file per day (pyiceberg's own split)."""
    table = load_table(local_settings(tmp_path).lake_table_config())
    groups = [
        scored_rows(tiny_scorer, 2, "a", datetime(2026, 3, 14, 23, 59, tzinfo=UTC)),
        scored_rows(tiny_scorer, 5, "b", datetime(2026, 3, 15, 0, 1, tzinfo=UTC)),
    ]
    rows = pa.Table.from_batches([to_record_batch(groups)])
    files = list(_compat.write_data_files(table.transaction(), rows))
    assert _partitions(files) == [(2026, 3, 14, 2), (2026, 3, 15, 5)]


def test_checksum_policy_is_set_for_a_custom_endpoint_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a custom S3 endpoint the SDK is asked for checksums only when required; for AWS nothing is set."""
    for key in ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
        monkeypatch.delenv(key, raising=False)
    _compat.s3_checksums_when_required(None, None)
    assert "AWS_REQUEST_CHECKSUM_CALCULATION" not in os.environ
    _compat.s3_checksums_when_required(None, "http://127.0.0.1:9000")
    assert os.environ["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
