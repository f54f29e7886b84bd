"""The rescoring job: a Glue 5.0 (Spark 3.5) job that scores a CRM export on S3 with `leadscore.spark`.

One bucket holds what the job reads and writes, under fixed prefixes: `input/` (exports, Parquet), `output/`
(scores), `models/` (bundles) and `packages/` (the leadscore wheel, uploaded by the release). The job role reads
the first three read-only, writes under `output/` only, and reads its script from the CDK asset.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Final

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from leadscore_infra.config import EnvironmentConfig
from leadscore_infra.lake import secure_bucket

ROOT: Final = Path(__file__).resolve().parents[3]
SCRIPT: Final = ROOT / "deploy" / "glue" / "rescore_job.py"
INPUT_PREFIX: Final = "input"
OUTPUT_PREFIX: Final = "output"
MODELS_PREFIX: Final = "models"
PACKAGES_PREFIX: Final = "packages"
# Glue 5.0: Spark 3.5, Python 3.11, Java 17 (the versions `pyspark==3.5.*` in the dev group is tested against).
GLUE_VERSION: Final = "5.0"
WORKER_TYPE: Final = "G.1X"
WORKERS: Final = 4
TIMEOUT_MINUTES: Final = 180
# What the script does with S3 (deploy/glue/rescore_job.py): its tasks read the input and the model with pyarrow
# (the bundle directory copied), write their parts under output/.../_temporary/ (multipart uploads) and move them
# into place (copy, then delete), and the driver writes _SUCCESS (`leadscore.spark.score_parquet`); with
# `--reader spark`, Spark reads the input, writes through its commit protocol (temporary files copied, then
# deleted) and reads back one column of the output for the summary. The same actions serve both.
READ_ACTIONS: Final = ("s3:GetObject",)
WRITE_ACTIONS: Final = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
# Glue writes the job's driver and executor logs to /aws-glue/... log groups with the job role, encrypted with the
# security configuration's key (AssociateKmsKey).
LOG_ACTIONS: Final = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey")


def package_version() -> str:
    """The version of the leadscore wheel the job installs (pyproject.toml)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version: str = project["version"]
    return version


class RescoreJob(Construct):
    """Bucket, job role, security configuration and the Glue job that rescores a whole CRM."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey, logs: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.bucket = secure_bucket(
            self,
            "Bucket",
            key=key,
            access_logs=logs,
            access_logs_prefix="s3/batch/",
            lifecycle_rules=[],
        )
        self.script = s3_assets.Asset(self, "Script", path=str(SCRIPT))
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"leadscore {config.name} rescoring job: reads input/ and models/, writes output/",
        )
        for statement in self._statements(stack, key):
            self.role.add_to_principal_policy(statement)

        security = glue.CfnSecurityConfiguration(
            self,
            "Security",
            name=f"leadscore-{config.name}-rescore",
            encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
                cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                    cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn
                ),
                job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                    job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=key.key_arn
                ),
                s3_encryptions=[
                    glue.CfnSecurityConfiguration.S3EncryptionProperty(
                        s3_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn
                    )
                ],
            ),
        )
        bucket = self.bucket.bucket_name
        wheel = f"leadscore-{package_version()}-py3-none-any.whl"
        self.job = glue.CfnJob(
            self,
            "Job",
            name=f"leadscore-{config.name}-rescore",
            description="Score a CRM export (Parquet) with a model bundle; see deploy/README.md",
            role=self.role.role_arn,
            glue_version=GLUE_VERSION,
            worker_type=WORKER_TYPE,
            number_of_workers=WORKERS,
            timeout=TIMEOUT_MINUTES,
            max_retries=0,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=1),
            security_configuration=security.name,
            command=glue.CfnJob.JobCommandProperty(
                name="glueetl", python_version="3", script_location=self.script.s3_object_url
            ),
            default_arguments={
                "--additional-python-modules": f"s3://{bucket}/{PACKAGES_PREFIX}/{wheel}",
                "--input": f"s3://{bucket}/{INPUT_PREFIX}/",
                "--output": f"s3://{bucket}/{OUTPUT_PREFIX}/",
                "--model-uri": f"s3://{bucket}/{MODELS_PREFIX}/current/",
                "--job-bookmark-option": "job-bookmark-disable",
            },
        )
        self.job.add_dependency(security)
        CfnOutput(stack, "RescoreJobName", value=f"leadscore-{config.name}-rescore")
        CfnOutput(stack, "RescoreBucket", value=bucket)

    def _statements(self, stack: Stack, key: kms.IKey) -> list[iam.PolicyStatement]:
        """Every statement the job role needs, and nothing more."""
        bucket = self.bucket

        def objects(prefix: str) -> str:
            return bucket.arn_for_objects(f"{prefix}/*")

        return [
            iam.PolicyStatement(
                sid="ReadScript",
                actions=list(READ_ACTIONS),
                resources=[self.script.bucket.arn_for_objects(self.script.s3_object_key)],
            ),
            iam.PolicyStatement(
                sid="ReadInputModelsPackages",
                actions=list(READ_ACTIONS),
                resources=[objects(INPUT_PREFIX), objects(MODELS_PREFIX), objects(PACKAGES_PREFIX)],
            ),
            iam.PolicyStatement(sid="WriteOutput", actions=list(WRITE_ACTIONS), resources=[objects(OUTPUT_PREFIX)]),
            # A HEAD of a missing key answers 404 (not 403) only to a caller that may list the bucket, and carries
            # no prefix: IfExists lets it through (see permissions.py); listing is limited to the job's prefixes.
            iam.PolicyStatement(
                sid="ListJobPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={
                    "StringLikeIfExists": {
                        "s3:prefix": [
                            p
                            for prefix in (INPUT_PREFIX, OUTPUT_PREFIX, MODELS_PREFIX)
                            for p in (prefix, f"{prefix}/*")
                        ]
                    }
                },
            ),
            iam.PolicyStatement(
                sid="BucketKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}"},
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [bucket.bucket_arn, bucket.arn_for_objects("*")]
                    },
                },
            ),
            iam.PolicyStatement(
                sid="JobLogs",
                actions=list(LOG_ACTIONS),
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws-glue/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
        ]
