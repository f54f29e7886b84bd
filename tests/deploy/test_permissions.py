"""The task role's Glue actions are the ones pyiceberg's Glue catalog calls (moto's Glue, on loopback).

The S3 side is measured against a real S3 server under the synthesized statements
(tests/lake/test_restricted_credentials.py); moto enforces no IAM, so here the catalog's calls are recorded and
compared with the role's Glue statement.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import IntegerType, NestedField, StringType

REGION = "eu-west-1"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
TABLE = ("leadscore_dev", "lead_score_dev")


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """The moto server (Glue and S3 on one port) on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def glue_catalog(endpoint: str) -> GlueCatalog:
    """The Glue catalog of pyiceberg, with its S3 FileIO, both on moto."""
    return GlueCatalog(
        "lake",
        **{
            "glue.endpoint": endpoint,
            "glue.region": REGION,
            "glue.access-key-id": KEYS["aws_access_key_id"],
            "glue.secret-access-key": KEYS["aws_secret_access_key"],
            "s3.endpoint": endpoint,
            "s3.region": REGION,
            "s3.access-key-id": KEYS["aws_access_key_id"],
            "s3.secret-access-key": KEYS["aws_secret_access_key"],
        },
    )


def role_glue_actions(dev_json: dict[str, Any]) -> set[str]:
    """The Glue actions of the task role, from the synthesized template."""
    resources = dev_json["Resources"]
    (task,) = (
        r
        for r in resources.values()
        if r["Type"] == "AWS::ECS::TaskDefinition" and not r["Properties"]["Family"].endswith("-drift")
    )
    role = {"Ref": task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]}
    return {
        action
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and role in r["Properties"]["Roles"]
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if action.startswith("glue:")
    }


def test_glue_actions_are_what_load_commit_and_evolve_call(moto_endpoint: str, dev_json: dict[str, Any]) -> None:
    """Loading, appending, evolving schema/spec/properties and deleting call exactly the role's Glue actions."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION, **KEYS)
    s3.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": REGION})
    # The table as the stack creates it (here by an operator's catalog: CloudFormation is not at hand).
    operator = glue_catalog(moto_endpoint)
    operator.create_namespace(TABLE[0])
    schema = Schema(
        NestedField(1, "request_id", StringType(), required=False),
        NestedField(2, "year", IntegerType(), required=False),
    )
    operator.create_table(TABLE, schema, location="s3://lake/lead_score_dev")

    service = glue_catalog(moto_endpoint)
    calls: list[str] = []
    service.glue.meta.events.register("before-call.glue.*", lambda model, **_: calls.append(model.name))
    table = service.load_table(TABLE)
    table.append(
        pa.table({"request_id": ["r1"], "year": pa.array([2026], pa.int32())}),
        snapshot_properties={"leadscore.segments": "w-1:0"},
    )
    with table.update_schema() as update:
        update.add_column("new_feature", StringType())
    with table.update_spec() as spec:
        spec.add_identity("year")
    with table.transaction() as transaction:
        transaction.set_properties({"write.metadata.delete-after-commit.enabled": "true"})
    table.delete("request_id == 'r1'")

    assert {f"glue:{name}" for name in calls} == role_glue_actions(dev_json)
