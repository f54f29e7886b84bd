"""What the service's task role may do with the lake: the one place its S3, Glue, KMS and EFS statements are written.

The lake is two tables under two prefixes of its bucket: the predictions and the outcomes; each statement below
covers both.

The S3 actions are the ones pyiceberg needs, found by running it as a restricted Ceph RGW user under exactly these
statements (tests/lake/test_restricted_credentials.py applies the synthesized statements as a bucket policy):
- GetObject: read table metadata, manifest lists and manifests (written by other tasks or by the Glue CREATE).
- PutObject: data files, manifests, metadata JSON (multipart for large files).
- DeleteObject: old metadata files (`write.metadata.delete-after-commit.enabled`) and files of failed commits.
- AbortMultipartUpload: the failure path of a multipart upload (never on the happy path).
- ListBucket: every commit checks that its new metadata file does not exist yet (HEAD). S3 answers 404 only
  to a caller allowed to list the bucket, and that check carries no `s3:prefix`, so the condition must let a
  request without a prefix through (`StringLikeIfExists`). A prefix-only condition (`StringLike`) turns the
  check into a 403 and every commit fails. Listing under any other explicit prefix stays denied; the bucket
  holds nothing but the lake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import Stack
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from leadscore_infra.lake import outcomes_table_name

# pyiceberg's GlueCatalog: load_table calls GetTable; a commit calls GetTable, GetDatabase (is the database
# federated with S3 Tables?) and UpdateTable with the previous version id (optimistic locking). The table itself
# is created by the stack, so no CreateTable.
GLUE_ACTIONS: Final = ("glue:GetDatabase", "glue:GetTable", "glue:UpdateTable")
S3_OBJECT_ACTIONS: Final = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
EFS_ACTIONS: Final = ("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite")
# The service's predictions table per environment is lead_score_<env> (EnvironmentConfig.table_name).
PREDICTIONS_TABLE_PREFIX: Final = "lead_score_"


@dataclass(frozen=True, slots=True)
class LakeAccess:
    """The resources the task role reaches: the lake (bucket, prefixes, key, Glue tables) and the spool's EFS.

    The outcomes table is also its key prefix (`Lake.outcomes_table_name`); unset, it is the service's name for the
    environment of `table_name` (lead_score_<env> -> lead_outcomes_<env>).
    """

    bucket: s3.IBucket
    prefix: str
    key: kms.IKey | None
    database_name: str
    table_name: str
    file_system: efs.IFileSystem
    access_point: efs.IAccessPoint
    outcomes_table_name: str | None = None

    @property
    def outcomes_table(self) -> str:
        """The outcomes table's name, which is its key prefix too."""
        return self.outcomes_table_name or outcomes_table_name(self.table_name.removeprefix(PREDICTIONS_TABLE_PREFIX))

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Key prefixes the task writes under: the predictions', then the outcomes'."""
        return self.prefix, self.outcomes_table


def lake_statements(stack: Stack, access: LakeAccess) -> list[iam.PolicyStatement]:
    """Every statement the task role needs for the lake and its spool, and nothing more."""
    objects = [access.bucket.arn_for_objects(f"{prefix}/*") for prefix in access.prefixes]
    statements = [
        iam.PolicyStatement(sid="LakeObjects", actions=list(S3_OBJECT_ACTIONS), resources=objects),
        iam.PolicyStatement(
            sid="ListLakePrefix",
            actions=["s3:ListBucket"],
            resources=[access.bucket.bucket_arn],
            conditions={"StringLikeIfExists": {"s3:prefix": [f"{prefix}/*" for prefix in access.prefixes]}},
        ),
        iam.PolicyStatement(
            sid="LakeTable",
            actions=list(GLUE_ACTIONS),
            resources=[
                stack.format_arn(service="glue", resource="catalog"),
                stack.format_arn(service="glue", resource="database", resource_name=access.database_name),
                *(
                    stack.format_arn(service="glue", resource="table", resource_name=f"{access.database_name}/{name}")
                    for name in (access.table_name, access.outcomes_table)
                ),
            ],
        ),
        iam.PolicyStatement(
            sid="SpoolFileSystem",
            actions=list(EFS_ACTIONS),
            resources=[access.file_system.file_system_arn],
            conditions={"StringEquals": {"elasticfilesystem:AccessPointArn": access.access_point.access_point_arn}},
        ),
    ]
    if access.key is not None:
        # Only through S3 and only for this bucket: the key alone cannot decrypt anything else.
        statements.append(
            iam.PolicyStatement(
                sid="LakeObjectsKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[access.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}"},
                    # With an S3 Bucket Key the context is the bucket's ARN, without one the object's.
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [access.bucket.bucket_arn, *objects]},
                },
            )
        )
    return statements


def grant_lake(role: iam.IRole, access: LakeAccess) -> None:
    """Give `role` the lake statements (the task role of the service)."""
    stack = Stack.of(role)
    for statement in lake_statements(stack, access):
        role.add_to_principal_policy(statement)
