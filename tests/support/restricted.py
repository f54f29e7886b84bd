"""S3 credentials restricted to exactly what the deployed task role may do, on the test S3 server (Ceph RGW).

The statements come from the synthesized CDK template (the task role's S3 statements, written once in
`deploy/cdk/leadscore_infra/permissions.py`); their bucket and prefixes (predictions and outcomes) are rewritten to
a test bucket and prefixes and applied as that bucket's policy for a second RGW user. A test (or a whole server)
running with `RestrictedLake.env` / `.catalog_properties` can do with the lake what the task can on AWS, and
nothing more.

Usage::

    lake = restricted_lake(rgw, bucket="lake-1", prefix="predictions")
    env = {**os.environ, **lake.env}  # a server process under the task role's S3 permissions
"""

from __future__ import annotations

import functools
import json
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from tests.support.rgw import RgwServer, RgwUser

REGION: Final = "us-east-1"
# Recent SDKs upload with aws-chunked encoding and CRC trailers, which RGW refuses; "when_required" turns it off.
CHECKSUM_ENV: Final = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}
# The stack whose task role the tests take, its lake prefix (EnvironmentConfig.lake_prefix of dev) and its
# outcomes prefix (Lake.outcomes_table_name of dev).
STACK: Final = "leadscore-dev"
DEPLOYED_PREFIX: Final = "lead_score_dev"
DEPLOYED_OUTCOMES_PREFIX: Final = "lead_outcomes_dev"
# Where a service with a SQL catalog and the lake at s3://bucket/<prefix> puts its outcomes (outcomes_table_config).
OUTCOMES_PREFIX: Final = "lead_outcomes"


@functools.cache
def task_role_s3_statements() -> tuple[dict[str, Any], ...]:
    """The S3 statements of the dev service stack's task role, as synthesized (CDK runs once per process)."""
    from tests.deploy.conftest import ACCOUNT, synth_app  # noqa: PLC0415 - starts jsii only when needed

    outdir = Path(tempfile.mkdtemp(prefix="cdk.restricted."))
    synth_app({"env": "dev", "leadscore": {"dev": {"account": ACCOUNT}}}, outdir)
    template = json.loads((outdir / f"{STACK}.template.json").read_text())
    return tuple(s3_statements_of_task_role(template))


def s3_statements_of_task_role(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the task definition's role whose actions are all S3 actions."""
    resources: dict[str, Any] = template["Resources"]
    # The service's task definition (the scheduled drift export has its own, with the same role).
    (task,) = (
        r
        for r in resources.values()
        if r["Type"] == "AWS::ECS::TaskDefinition" and not r["Properties"]["Family"].endswith("-drift")
    )
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        statement
        for resource in resources.values()
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
    return [s for s in statements if all(a.startswith("s3:") for a in _as_list(s["Action"]))]


def bucket_policy(
    statements: tuple[dict[str, Any], ...] | list[dict[str, Any]],
    *,
    bucket: str,
    prefix: str,
    principal: str,
    outcomes_prefix: str = OUTCOMES_PREFIX,
) -> dict[str, Any]:
    """The statements as a bucket policy for `principal`, on `bucket` and the test prefixes instead of the deployed."""
    prefixes = {DEPLOYED_PREFIX: prefix, DEPLOYED_OUTCOMES_PREFIX: outcomes_prefix}

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
                return f"arn:aws:s3:::{bucket}"
            if "Fn::Join" in value:
                separator, parts = value["Fn::Join"]
                return separator.join(str(rewrite(p)) for p in parts)
            unknown = {"Ref", "Fn::GetAtt", "Fn::Sub", "Fn::ImportValue"} & set(value)
            if unknown:
                raise ValueError(f"cannot rewrite {value} for the test bucket")
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str):
            for deployed, test in prefixes.items():
                value = _swap_prefix(value, deployed, test)
            return value
        return value

    policy_statements = [
        {"Principal": {"AWS": [principal]}, **{k: rewrite(v) for k, v in s.items() if k != "Sid"}} for s in statements
    ]
    return {"Version": "2012-10-17", "Statement": policy_statements}


def _swap_prefix(text: str, deployed: str, prefix: str) -> str:
    """A deployed prefix replaced by the test prefix, as a whole path segment only."""
    if text == deployed or text.startswith(f"{deployed}/"):
        return prefix + text.removeprefix(deployed)
    return text.replace(f"/{deployed}/", f"/{prefix}/")


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def s3_client(endpoint: str, access_key: str, secret_key: str) -> BaseClient:
    """A boto3 S3 client for the test server (path-style, checksums only when required)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1},
        ),
    )


@dataclass(frozen=True, slots=True)
class RestrictedLake:
    """A lake location on the test server and a user that has only the task role's S3 permissions on it."""

    endpoint: str
    bucket: str
    prefix: str
    user: RgwUser
    policy: dict[str, Any]
    outcomes_prefix: str = OUTCOMES_PREFIX

    @property
    def uri(self) -> str:
        """The lake location (the Iceberg table's location)."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def env(self) -> dict[str, str]:
        """Environment of a server process that uses this lake with the restricted user's keys."""
        return {
            "AWS_ACCESS_KEY_ID": self.user.access_key,
            "AWS_SECRET_ACCESS_KEY": self.user.secret_key,
            "AWS_EC2_METADATA_DISABLED": "true",
            **CHECKSUM_ENV,
            "LEADSCORE_LAKE_URI": self.uri,
            "LEADSCORE_S3_ENDPOINT_URL": self.endpoint,
            "LEADSCORE_S3_REGION": REGION,
        }

    @property
    def catalog_properties(self) -> dict[str, str]:
        """The FileIO properties (pyiceberg) of the restricted user (add the catalog's own `uri`/`warehouse`)."""
        return {
            "s3.endpoint": self.endpoint,
            "s3.access-key-id": self.user.access_key,
            "s3.secret-access-key": self.user.secret_key,
            "s3.region": REGION,
        }

    def client(self) -> BaseClient:
        """A boto3 client with the restricted user's keys."""
        return s3_client(self.endpoint, self.user.access_key, self.user.secret_key)


def restricted_lake(rgw: RgwServer, *, bucket: str, prefix: str) -> RestrictedLake:
    """Create `bucket` (as the admin user) with the task role's S3 statements as its policy for a new user."""
    user = rgw.create_user(f"task-{uuid.uuid4().hex[:12]}")
    policy = bucket_policy(task_role_s3_statements(), bucket=bucket, prefix=prefix, principal=user.principal)
    admin = s3_client(rgw.endpoint, rgw.access_key, rgw.secret_key)
    admin.create_bucket(Bucket=bucket)
    admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return RestrictedLake(endpoint=rgw.endpoint, bucket=bucket, prefix=prefix, user=user, policy=policy)
