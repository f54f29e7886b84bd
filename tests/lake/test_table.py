"""The Iceberg table: created from the lake schema, evolved in place, commits named by their segments."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from tests.support.lake import local_settings, scored_rows

from leadscore.lake.errors import LakeError
from leadscore.lake.records import to_record_batch
from leadscore.lake.schema import ARROW_SCHEMA, PARTITION_KEYS
from leadscore.lake.table import (
    LakeNotFound,
    TableConfig,
    append_segments,
    committed_segments,
    live_data_files,
    load_table,
)
from leadscore.model.bundle import Scorer


def _config(tmp_path: Path) -> TableConfig:
    return local_settings(tmp_path).lake_table_config()


def _rows(scorer: Scorer, n: int, request_id: str) -> pa.Table:
    return pa.Table.from_batches([to_record_batch([scored_rows(scorer, n, request_id)])])


def test_a_new_table_has_the_lake_schema_and_day_partitions(tmp_path: Path) -> None:
    """The table is created with every lake column and identity partitions on year, month and day."""
    table = load_table(_config(tmp_path))
    assert [f.name for f in table.schema().fields] == ARROW_SCHEMA.names
    names = [table.schema().find_field(f.source_id).name for f in table.spec().fields]
    assert names == list(PARTITION_KEYS)
    assert table.properties["write.update.isolation-level"] == "snapshot"


def test_a_table_missing_columns_gains_them_by_name(tmp_path: Path) -> None:
    """A table made by an older version (fewer columns) gets the new columns appended, keeping its rows."""
    config = _config(tmp_path)
    table = load_table(config)
    with table.update_schema(allow_incompatible_changes=True) as update:
        update.delete_column("engineered_pages_per_session")
    assert "engineered_pages_per_session" not in [f.name for f in table.schema().fields]
    evolved = load_table(config)
    assert evolved.schema().find_field("engineered_pages_per_session") is not None


def test_data_files_live_under_the_configured_location(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Data files are written below the lake location, in year=/month=/day= directories."""
    config = _config(tmp_path)
    table = load_table(config)
    append_segments(table, _rows(tiny_scorer, 2, "r"), ["seg-1"])
    (path,) = live_data_files(table)
    assert path.startswith(config.table_location() + "/data/year=")


def test_committed_segments_are_read_from_snapshot_summaries(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Each commit names its segments; the set of committed ids is the union over snapshots."""
    table = load_table(_config(tmp_path))
    append_segments(table, _rows(tiny_scorer, 1, "a"), ["w-a-1", "w-a-2"])
    append_segments(table, _rows(tiny_scorer, 1, "b"), ["w-b-1"])
    assert committed_segments(table) == {"w-a-1", "w-a-2", "w-b-1"}


def test_a_tool_never_creates_a_missing_lake(tmp_path: Path) -> None:
    """Opening a lake that does not exist without create raises LakeNotFound and writes nothing."""
    with pytest.raises(LakeNotFound):
        load_table(_config(tmp_path), create=False)
    assert not (tmp_path / "lake").exists()


def test_a_lake_on_s3_needs_a_shared_catalog(tmp_path: Path) -> None:
    """An S3 location with the default SQL catalog and no catalog URL is refused with what to set."""
    config = local_settings(tmp_path, lake_uri="s3://bucket/prefix").lake_table_config()
    with pytest.raises(LakeError, match="LEADSCORE_LAKE_CATALOG"):
        config.catalog_properties()


def test_the_glue_catalog_path_commits_and_registers_an_iceberg_table(
    tmp_path: Path, tiny_scorer: Scorer, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the Glue catalog (moto's Glue and S3), rows commit and Glue holds an ICEBERG table Athena can read."""
    import boto3  # noqa: PLC0415

    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="glue-lake")
    settings = local_settings(
        tmp_path,
        lake_uri="s3://glue-lake/predictions",
        lake_catalog="glue",
        glue_endpoint_url=moto_endpoint,
        s3_endpoint_url=moto_endpoint,
        s3_region="us-east-1",
    )
    config = settings.lake_table_config()
    table = load_table(config)
    append_segments(table, _rows(tiny_scorer, 3, "glue"), ["w-g-1"])
    again = load_table(config, create=False)
    assert again.scan().to_arrow().num_rows == 3
    assert committed_segments(again) == {"w-g-1"}
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name="us-east-1")
    described = glue.get_table(DatabaseName=config.namespace, Name=config.name)["Table"]
    assert described["Parameters"]["table_type"].upper() == "ICEBERG"
    assert described["Parameters"]["metadata_location"].startswith("s3://glue-lake/predictions/metadata/")


def test_a_refused_commit_leaves_no_data_files_behind(
    tmp_path: Path, tiny_scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every commit attempt is refused, the data files written for it are deleted and the error raised."""
    from pyiceberg.exceptions import CommitFailedException  # noqa: PLC0415

    config = _config(tmp_path)
    table = load_table(config)
    table.transaction().set_properties({"commit.retry.num-retries": "0"}).commit_transaction()

    def refuse(*args: object, **kwargs: object) -> None:
        raise CommitFailedException("another writer won")

    monkeypatch.setattr(type(table), "_do_commit", refuse)
    with pytest.raises(CommitFailedException):
        append_segments(table, _rows(tiny_scorer, 2, "r"), ["seg-1"])
    assert not list((tmp_path / "lake" / "data").rglob("*.parquet"))


def test_old_snapshots_are_expired_and_the_current_one_kept(tmp_path: Path, tiny_scorer: Scorer) -> None:
    """Expiry drops snapshots past the retention (their rows stay), never the current one."""
    from leadscore.lake.table import expire_snapshots  # noqa: PLC0415

    table = load_table(_config(tmp_path))
    for i in range(3):
        append_segments(table, _rows(tiny_scorer, 1, f"r{i}"), [f"seg-{i}"])
    assert expire_snapshots(table, retention_seconds=3600) == 0
    assert expire_snapshots(table, retention_seconds=0) == 2
    assert len(table.snapshots()) == 1
    assert table.scan().to_arrow().num_rows == 3
