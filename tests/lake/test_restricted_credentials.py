"""The lake under the deployed task role's S3 permissions: an Iceberg table on RGW, used by a restricted user.

The user's bucket policy is the task role's S3 statements from the synthesized CDK template
(tests/support/restricted.py), so what passes here is what the deployed role allows.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DoubleType, IntegerType, NestedField, StringType, TimestampType
from tests.deploy.conftest import require_tool
from tests.support.lake import settings_from_env
from tests.support.restricted import CHECKSUM_ENV, RestrictedLake, bucket_policy, restricted_lake, s3_client
from tests.support.rgw import RgwServer
from tests.support.server import start_server

from leadscore.outcomes.table import read_outcomes

NAMESPACE = "leadscore_test"
SCHEMA = Schema(
    NestedField(1, "request_id", StringType(), required=False),
    NestedField(2, "timestamp", TimestampType(), required=False),
    NestedField(3, "score", IntegerType(), required=False),
    NestedField(4, "confidence", DoubleType(), required=False),
    NestedField(5, "year", IntegerType(), required=False),
    NestedField(6, "month", IntegerType(), required=False),
    NestedField(7, "day", IntegerType(), required=False),
)
SPEC = PartitionSpec(
    *(
        PartitionField(source_id=source, field_id=1000 + offset, transform=IdentityTransform(), name=name)
        for offset, (source, name) in enumerate(((5, "year"), (6, "month"), (7, "day")))
    )
)
# What the service sets on its table: old metadata files are deleted after each commit.
TABLE_PROPERTIES = {"write.metadata.delete-after-commit.enabled": "true", "write.metadata.previous-versions-max": "2"}


def rows(request_id: str, count: int) -> pa.Table:
    """`count` rows of one request, all on one day."""
    ts = dt.datetime(2026, 12, 1, 9, 30)  # noqa: DTZ001 - Iceberg `timestamp`: naive, UTC by convention
    return pa.table(
        {
            "request_id": pa.array([request_id] * count, pa.string()),
            "timestamp": pa.array([ts] * count, pa.timestamp("us")),
            "score": pa.array([3] * count, pa.int32()),
            "confidence": pa.array([0.5] * count, pa.float64()),
            "year": pa.array([2026] * count, pa.int32()),
            "month": pa.array([12] * count, pa.int32()),
            "day": pa.array([1] * count, pa.int32()),
        }
    )


@pytest.fixture(autouse=True)
def checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 client of pyarrow (AWS SDK for C++) reads the checksum settings from the environment."""
    for key, value in CHECKSUM_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def lake(rgw: RgwServer) -> RestrictedLake:
    """A fresh bucket whose policy gives a new user the task role's S3 statements on prefix `predictions`."""
    require_tool(shutil.which("node"), "node")  # the CDK synthesizes through node
    return restricted_lake(rgw, bucket=f"lake-{uuid.uuid4().hex[:12]}", prefix="predictions")


def catalog(path: Path, warehouse: str, s3: dict[str, str]) -> SqlCatalog:
    """A SQLite catalog at `path` whose FileIO uses the given S3 properties."""
    return SqlCatalog("lake", uri=f"sqlite:///{path}", warehouse=warehouse, **s3)


@pytest.fixture
def admin_table(tmp_path: Path, rgw: RgwServer, lake: RestrictedLake) -> Iterator[Path]:
    """The lake's table, created and first appended to by the admin user; yields the catalog file."""
    path = tmp_path / "catalog.db"
    admin = {
        "s3.endpoint": rgw.endpoint,
        "s3.access-key-id": rgw.access_key,
        "s3.secret-access-key": rgw.secret_key,
        "s3.region": "us-east-1",
    }
    admin_catalog = catalog(path, lake.uri, admin)
    admin_catalog.create_namespace(NAMESPACE)
    table = admin_catalog.create_table(
        (NAMESPACE, "predictions"), SCHEMA, location=lake.uri, partition_spec=SPEC, properties=TABLE_PROPERTIES
    )
    table.append(rows("admin", 5), snapshot_properties={"leadscore.segments": "admin-0"})
    yield path
    admin_catalog.engine.dispose()


def restricted_table(path: Path, lake: RestrictedLake) -> Table:
    """The table loaded with the restricted user's keys."""
    return catalog(path, lake.uri, lake.catalog_properties).load_table((NAMESPACE, "predictions"))


def request_counts(table: Table) -> Counter[str]:
    """Rows per request id in the table's current snapshot."""
    return Counter(table.refresh().scan().to_arrow().column("request_id").to_pylist())


def test_restricted_user_appends_to_the_admins_table(admin_table: Path, lake: RestrictedLake) -> None:
    """Appends with snapshot properties commit, and the admin's rows stay readable beside them."""
    table = restricted_table(admin_table, lake)
    for i in range(3):
        table.append(rows(f"r{i}", 10), snapshot_properties={"leadscore.segments": f"w-1:{i}"})
    assert request_counts(table) == {"admin": 5, "r0": 10, "r1": 10, "r2": 10}
    snapshot = table.current_snapshot()
    assert snapshot is not None
    assert snapshot.summary is not None
    assert snapshot.summary["leadscore.segments"] == "w-1:2"


def test_restricted_user_overwrites_and_deletes_rows(admin_table: Path, lake: RestrictedLake) -> None:
    """An overwrite and a delete (the forget command's rewrite) commit under the restricted user."""
    table = restricted_table(admin_table, lake)
    table.append(rows("keep", 4))
    table.append(rows("replace", 4))
    table.overwrite(rows("replaced", 2), overwrite_filter="request_id == 'replace'")
    table.delete("request_id == 'admin'")
    assert request_counts(table) == {"keep": 4, "replaced": 2}


def test_restricted_user_removes_old_metadata_files(admin_table: Path, lake: RestrictedLake) -> None:
    """With delete-after-commit, old metadata files are deleted: at most previous-versions-max + 1 remain."""
    table = restricted_table(admin_table, lake)
    for i in range(5):
        table.append(rows(f"r{i}", 1))
    listed = lake.client().list_objects_v2(Bucket=lake.bucket, Prefix=f"{lake.prefix}/metadata/")
    metadata_files = [o["Key"] for o in listed["Contents"] if o["Key"].endswith(".metadata.json")]
    assert len(metadata_files) == int(TABLE_PROPERTIES["write.metadata.previous-versions-max"]) + 1


def test_restricted_user_aborts_its_multipart_upload(lake: RestrictedLake) -> None:
    """A failed large upload can be aborted under the prefix (else its parts would linger until the lifecycle rule)."""
    client = lake.client()
    key = f"{lake.prefix}/data/aborted.parquet"
    upload = client.create_multipart_upload(Bucket=lake.bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=lake.bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    client.abort_multipart_upload(Bucket=lake.bucket, Key=key, UploadId=upload)
    with pytest.raises(ClientError, match="NoSuchKey"):
        client.get_object(Bucket=lake.bucket, Key=key)


def test_put_outside_the_lake_prefix_is_denied(lake: RestrictedLake) -> None:
    """The restricted user cannot write beside the lake."""
    with pytest.raises(ClientError, match="AccessDenied"):
        lake.client().put_object(Bucket=lake.bucket, Key="elsewhere/x.parquet", Body=b"x")


def test_reading_another_prefix_is_denied(rgw: RgwServer, lake: RestrictedLake) -> None:
    """An object another user wrote outside the lake prefix cannot be read."""
    s3_client(rgw.endpoint, rgw.access_key, rgw.secret_key).put_object(
        Bucket=lake.bucket, Key="other/secret.txt", Body=b"not the lake"
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        lake.client().get_object(Bucket=lake.bucket, Key="other/secret.txt")


def test_listing_another_prefix_is_denied(lake: RestrictedLake) -> None:
    """Listing is limited to the lake prefix whenever a prefix is given."""
    with pytest.raises(ClientError, match="AccessDenied"):
        lake.client().list_objects_v2(Bucket=lake.bucket, Prefix="other/")


def test_deleting_outside_the_lake_prefix_is_denied(rgw: RgwServer, lake: RestrictedLake) -> None:
    """The restricted user cannot delete what lies outside the lake prefix."""
    s3_client(rgw.endpoint, rgw.access_key, rgw.secret_key).put_object(Bucket=lake.bucket, Key="other/x", Body=b"x")
    with pytest.raises(ClientError, match="AccessDenied"):
        lake.client().delete_object(Bucket=lake.bucket, Key="other/x")


def test_a_list_grant_limited_to_the_prefix_breaks_every_commit(
    rgw: RgwServer, admin_table: Path, lake: RestrictedLake
) -> None:
    """Why ListBucket is granted `IfExists`: a commit's HEAD on its new metadata file carries no prefix."""
    strict = [
        {**s, "Condition": {"StringLike": s["Condition"]["StringLikeIfExists"]}} if "Condition" in s else s
        for s in lake.policy["Statement"]
    ]
    admin = s3_client(rgw.endpoint, rgw.access_key, rgw.secret_key)
    admin.put_bucket_policy(Bucket=lake.bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": strict}))
    table = restricted_table(admin_table, lake)
    with pytest.raises((OSError, PermissionError, CommitFailedException), match=r"(?i)access.?denied|permission"):
        table.append(rows("r", 1))


def test_bucket_policy_rewrites_the_deployed_bucket_and_prefix() -> None:
    """Template references to the lake bucket become the test bucket; the deployed prefix becomes the test one."""
    statements = [
        {
            "Action": "s3:ListBucket",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": ["LakeBucketB1D32E10", "Arn"]},
            "Condition": {"StringLikeIfExists": {"s3:prefix": ["lead_score_dev/*"]}},
            "Sid": "ListLakePrefix",
        },
        {
            "Action": ["s3:GetObject"],
            "Effect": "Allow",
            "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["LakeBucketB1D32E10", "Arn"]}, "/lead_score_dev/*"]]},
        },
    ]
    policy = bucket_policy(statements, bucket="b", prefix="p", principal="arn:aws:iam:::user/u")
    assert policy["Statement"] == [
        {
            "Principal": {"AWS": ["arn:aws:iam:::user/u"]},
            "Action": "s3:ListBucket",
            "Effect": "Allow",
            "Resource": "arn:aws:s3:::b",
            "Condition": {"StringLikeIfExists": {"s3:prefix": ["p/*"]}},
        },
        {
            "Principal": {"AWS": ["arn:aws:iam:::user/u"]},
            "Action": ["s3:GetObject"],
            "Effect": "Allow",
            "Resource": "arn:aws:s3:::b/p/*",
        },
    ]


def test_a_server_under_the_task_role_commits_outcomes(
    tmp_path: Path, tiny_bundle: Path, lake: RestrictedLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outcomes posted to a server holding only the task role's S3 rights reach the outcomes table, under its prefix."""
    env = {
        **lake.env,
        "LEADSCORE_LAKE_CATALOG_URI": f"sqlite:///{tmp_path / 'catalog.db'}",
        "LEADSCORE_MODEL_DIR": str(tiny_bundle),
        "LEADSCORE_PREDICTOR": "xgboost",
        "LEADSCORE_LAKE_COMMIT_IN_SUBPROCESS": "false",  # no committer process to start: this test is about S3 rights
    }
    server = start_server(tmp_path, env=env)
    try:
        body = {"outcomes": [{"lead_id": "L1", "converted": True, "occurred_at": "2026-11-30T10:00:00Z"}]}
        assert httpx.post(f"{server.url}/api/v1/outcomes", json=body, timeout=10).status_code == 202
    finally:
        assert server.stop() == 0  # committed on the way out, nothing left on the spool
    for key, value in lake.env.items():
        monkeypatch.setenv(key, value)
    assert read_outcomes(settings_from_env(server.env)).column("lead_id").to_pylist() == ["L1"]
    listed = lake.client().list_objects_v2(Bucket=lake.bucket, Prefix=f"{lake.outcomes_prefix}/data/")
    assert listed["KeyCount"] >= 1
