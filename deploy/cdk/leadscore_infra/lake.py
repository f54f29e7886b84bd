"""The data lake: the S3 bucket the service writes Parquet to, its Glue table and an Athena workgroup.

The Glue table is generated from the service's own lake schema and partition projection
(`leadscore.lake.schema`, `leadscore.lake.ddl`), the same source as `leadscore lake ddl`: a column added to
the feature spec reaches Athena with the next deploy, never by hand.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from leadscore.lake.ddl import projection_properties
from leadscore.lake.schema import COLUMNS, PARTITION_KEYS, athena_columns
from leadscore_infra.config import EnvironmentConfig

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
# Glue limits a column comment to 255 characters.
_COMMENT_MAX = 255


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey | None,
    access_logs: s3.IBucket | None,
    access_logs_prefix: str = "",
    lifecycle_rules: list[s3.LifecycleRule],
) -> s3.Bucket:
    """A private, encrypted, versioned bucket that refuses plain HTTP (the settings every bucket here shares)."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.KMS if key else s3.BucketEncryption.S3_MANAGED,
        encryption_key=key,
        bucket_key_enabled=key is not None,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=access_logs_prefix or None,
        lifecycle_rules=[
            s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(30)),
            *lifecycle_rules,
        ],
        removal_policy=RemovalPolicy.RETAIN,
    )


class Lake(Construct):
    """Lake bucket + Glue database and table + Athena workgroup with its results bucket."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey, logs: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        lake_rules = [
            s3.LifecycleRule(
                id="tiering",
                transitions=[
                    s3.Transition(
                        storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                        transition_after=Duration.days(config.lake_tiering_days),
                    )
                ],
            )
        ]
        if config.lake_expiry_days:
            lake_rules.append(s3.LifecycleRule(id="expiry", expiration=Duration.days(config.lake_expiry_days)))
        self.bucket = secure_bucket(
            self,
            "Bucket",
            key=key,
            access_logs=logs,
            access_logs_prefix="s3/lake/",
            lifecycle_rules=lake_rules,
        )
        self.location = f"s3://{self.bucket.bucket_name}/{config.lake_prefix}"
        self.uri = self.location

        self.results_bucket = secure_bucket(
            self,
            "AthenaResults",
            key=key,
            access_logs=logs,
            access_logs_prefix="s3/athena-results/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-results", expiration=Duration.days(config.athena_results_days))
            ],
        )

        account = Stack.of(self).account
        self.database_name = f"leadscore_{config.name}"
        database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description=f"leadscore {config.name}: every prediction, one row per lead"
            ),
        )
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=account,
            database_name=self.database_name,
            table_input=self._table_input(config.table_name, self.location),
        )
        self.table.add_resource_dependency(database)  # the table needs its database

        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=f"leadscore-{config.name}",
            description=f"Queries over the leadscore {config.name} lake",
            state="ENABLED",
            recursive_delete_option=not config.protect_data,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                # Clients cannot send results elsewhere or unencrypted.
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=config.athena_bytes_scanned_cutoff,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results_bucket.bucket_name}/results/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn
                    ),
                ),
            ),
        )

    @staticmethod
    def _table_input(name: str, location: str) -> glue.CfnTable.TableInputProperty:
        comments = {c.name: c.comment[:_COMMENT_MAX] for c in COLUMNS}
        return glue.CfnTable.TableInputProperty(
            name=name,
            description="One row per scored lead; partitions are projected, never added.",
            table_type="EXTERNAL_TABLE",
            parameters={"EXTERNAL": "TRUE", **projection_properties(location)},
            partition_keys=[glue.CfnTable.ColumnProperty(name=key, type="int") for key in PARTITION_KEYS],
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                location=f"{location}/",
                input_format=PARQUET_INPUT,
                output_format=PARQUET_OUTPUT,
                serde_info=glue.CfnTable.SerdeInfoProperty(
                    serialization_library=PARQUET_SERDE, parameters={"serialization.format": "1"}
                ),
                columns=[
                    glue.CfnTable.ColumnProperty(name=column, type=athena_type, comment=comments.get(column))
                    for column, athena_type in athena_columns()
                ],
            ),
        )

    def grant_write(self, role: iam.IRole) -> None:
        """Let `role` write new objects under the lake prefix, and do nothing else in the bucket."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteLakeObjects",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[self.bucket.arn_for_objects(f"{self.config.lake_prefix}/*")],
            )
        )
        key = self.bucket.encryption_key
        if key is not None:
            stack = Stack.of(self)
            # Only through S3 and only for this bucket: the key alone cannot decrypt anything else.
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="EncryptLakeObjects",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}"},
                        # With an S3 Bucket Key the context is the bucket's ARN, without one the object's.
                        "StringLike": {
                            "kms:EncryptionContext:aws:s3:arn": [
                                self.bucket.bucket_arn,
                                self.bucket.arn_for_objects(f"{self.config.lake_prefix}/*"),
                            ]
                        },
                    },
                )
            )
