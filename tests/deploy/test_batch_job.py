"""The rescoring Glue job (deploy/cdk/leadscore_infra/batch.py): Glue 5.0, its script, and a least-privilege role."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from leadscore_infra.batch import package_version

from tests.deploy.conftest import ROOT, venv_tool

S3 = re.compile(r"s3://([^/]+)/([^/]+)/")


def render(value: Any) -> Any:
    """A template value as plain text: a bucket's ARN as arn:aws:s3:::LOGICAL_ID, its Ref as LOGICAL_ID."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [render(v) for v in value]
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(p) for p in parts)
    if "Fn::GetAtt" in value:
        return f"arn:aws:s3:::{value['Fn::GetAtt'][0]}"
    if "Ref" in value:
        return value["Ref"]
    raise AssertionError(f"unexpected intrinsic {value}")


def resources_of(dev_json: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The properties of every resource of `kind` in the dev service stack."""
    return [r["Properties"] for r in dev_json["Resources"].values() if r["Type"] == kind]


def job(dev_json: dict[str, Any]) -> dict[str, Any]:
    """The rescoring job's properties."""
    (found,) = resources_of(dev_json, "AWS::Glue::Job")
    return found


def role_statements(dev_json: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the job role's policies."""
    role = {"Ref": job(dev_json)["Role"]["Fn::GetAtt"][0]}
    return [
        statement
        for policy in resources_of(dev_json, "AWS::IAM::Policy")
        if role in policy["Roles"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def grants(statements: list[dict[str, Any]], service: str) -> set[tuple[str, str]]:
    """(action, resource) pairs of the statements, for actions of `service`."""
    pairs = set()
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = render(statement["Resource"])
        for action in actions:
            if action.startswith(f"{service}:"):
                pairs.update(
                    (action, resource) for resource in ([resources] if isinstance(resources, str) else resources)
                )
    return pairs


def test_job_runs_the_script_on_glue_5_with_g1x_workers(dev_json) -> None:
    """The job is a Spark job on Glue 5.0 (Spark 3.5, Python 3.11) with G.1X workers, running the script's asset."""
    properties = job(dev_json)
    assert properties["GlueVersion"] == "5.0"
    assert properties["WorkerType"] == "G.1X"
    assert properties["Command"]["Name"] == "glueetl"
    assert properties["Command"]["ScriptLocation"].endswith(".py")
    assert properties["SecurityConfiguration"] == "leadscore-dev-rescore"


def test_job_installs_the_wheel_of_this_version(dev_json) -> None:
    """The job installs leadscore from the wheel of the package's own version, under packages/."""
    arguments = render(job(dev_json)["DefaultArguments"]["--additional-python-modules"])
    assert arguments.endswith(f"/packages/leadscore-{package_version()}-py3-none-any.whl")


def test_role_s3_grants_are_exactly_what_the_script_reads_and_writes(dev_json) -> None:
    """S3: read the script, the wheel, the input and the model prefixes; write the output prefix; nothing else."""
    properties = job(dev_json)
    arguments = {name: render(value) for name, value in properties["DefaultArguments"].items()}
    prefix = {name: S3.match(arguments[name]).groups() for name in ("--input", "--model-uri", "--output")}
    wheel_bucket, wheel_prefix = S3.match(arguments["--additional-python-modules"]).groups()
    script = properties["Command"]["ScriptLocation"].removeprefix("s3://")
    expected = {
        ("s3:GetObject", f"arn:aws:s3:::{script}"),
        ("s3:GetObject", f"arn:aws:s3:::{wheel_bucket}/{wheel_prefix}/*"),
    }
    for name in ("--input", "--model-uri"):
        bucket, top = prefix[name]
        expected.add(("s3:GetObject", f"arn:aws:s3:::{bucket}/{top}/*"))
    bucket, top = prefix["--output"]
    expected.update(
        (action, f"arn:aws:s3:::{bucket}/{top}/*")
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
    )
    expected.add(("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
    assert grants(role_statements(dev_json), "s3") == expected


def test_role_lists_only_the_job_prefixes(dev_json) -> None:
    """Listing the bucket is limited to the input, output and model prefixes (and prefix-less HEAD checks)."""
    (listing,) = (s for s in role_statements(dev_json) if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {
        "StringLikeIfExists": {"s3:prefix": ["input", "input/*", "output", "output/*", "models", "models/*"]}
    }


def test_role_uses_the_key_only_through_s3_for_the_job_bucket(dev_json) -> None:
    """KMS: data keys and decryption through S3 only, for objects of the job's bucket."""
    (key,) = (s for s in role_statements(dev_json) if s["Sid"] == "BucketKey")
    assert sorted(key["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert set(key["Condition"]) == {"StringEquals", "StringLike"}
    assert "kms:ViaService" in key["Condition"]["StringEquals"]


def test_role_writes_logs_only_to_glue_log_groups(dev_json) -> None:
    """CloudWatch Logs: only the /aws-glue/ log groups, where Glue writes the job's logs."""
    logs = grants(role_statements(dev_json), "logs")
    assert {resource for _, resource in logs} == {"arn:aws:logs:eu-west-1:123456789012:log-group:/aws-glue/*"}
    assert {action for action, _ in logs} == {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:AssociateKmsKey",
    }


def test_role_is_assumed_by_glue_only(dev_json) -> None:
    """Only the Glue service can assume the job role, and the role has no managed policy."""
    role_id = job(dev_json)["Role"]["Fn::GetAtt"][0]
    role = dev_json["Resources"][role_id]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "glue.amazonaws.com"}
    assert "ManagedPolicyArns" not in role


def test_security_configuration_encrypts_everything_with_the_stack_key(dev_json) -> None:
    """Glue's S3 writes, logs and bookmarks are encrypted with KMS."""
    (security,) = resources_of(dev_json, "AWS::Glue::SecurityConfiguration")
    encryption = security["EncryptionConfiguration"]
    assert encryption["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert encryption["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert encryption["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"


def test_ruff_passes_on_the_glue_script() -> None:
    """The Glue script meets the project's ruff rules and format."""
    ruff = venv_tool("ruff")
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run([ruff, *command, "deploy/glue"], cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout
