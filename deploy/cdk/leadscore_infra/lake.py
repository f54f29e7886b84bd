"""The data lake: the S3 bucket of the Iceberg table, its Glue table and an Athena workgroup.

The Glue table is the Iceberg table the service commits to (pyiceberg's GlueCatalog), created by Glue from the
service's own lake schema (`leadscore.lake.schema.COLUMNS`): Glue writes the first metadata file, the service
evolves the schema and partition spec from there and swaps `metadata_location` on every commit. Iceberg has its
own partitioning (identity on year/month/day), so there is no partition projection. CloudFormation takes a field's
type as a string, which fits Iceberg's primitive types only (nested types are refused there, aws-cdk#37180): Glue
creates the leading primitive columns, and the service appends the rest (the list columns of the reasons, and all
after them) in the same order at its first start.
The outcomes table (`leadscore.outcomes.table.OUTCOME_SCHEMA`, primitive columns only) is made the same way, in the
same database, beside the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pyarrow as pa
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from leadscore.lake.schema import COLUMNS, PARTITION_KEYS
from leadscore.lake.table import TABLE_PROPERTIES
from leadscore.outcomes.table import COMMENTS as OUTCOME_COMMENTS
from leadscore.outcomes.table import LOCAL_TABLE_NAME as OUTCOMES_TABLE
from leadscore.outcomes.table import OUTCOME_SCHEMA
from leadscore_infra.config import EnvironmentConfig

# The table's format version and properties are the service's own (it puts them back if they drift).
ICEBERG_FORMAT_VERSION: Final = TABLE_PROPERTIES["format-version"]
ICEBERG_PROPERTIES: Final = {k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version"}
# The day columns every row carries (the service's partition spec is identity on each).
DAY_COLUMNS: Final = PARTITION_KEYS
# Iceberg numbers partition fields from 1000 (the spec's convention, and what pyiceberg assigns).
PARTITION_FIELD_ID_START: Final = 1000
# Glue limits a column comment to 255 characters.
_COMMENT_MAX = 255


@dataclass(frozen=True, slots=True)
class IcebergField:
    """One top-level field of the table's Iceberg schema."""

    id: int
    name: str
    type: str
    doc: str | None
    required: bool = False


def iceberg_type(arrow: pa.DataType) -> str | None:
    """The Iceberg primitive type of a lake column's Arrow type (timestamps: `timestamp`, UTC by convention).

    None for a nested type (a list); ValueError for a type the lake does not use.
    """
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    if pa.types.is_list(arrow):
        return None
    names = {
        pa.string(): "string",
        pa.int32(): "int",
        pa.int64(): "long",
        pa.float64(): "double",
        pa.bool_(): "boolean",
    }
    if arrow not in names:
        raise ValueError(f"no Iceberg type for the lake's Arrow type {arrow}")
    return names[arrow]


def iceberg_fields() -> list[IcebergField]:
    """The table's first fields: the lake's COLUMNS in order up to the first nested one, ids from 1.

    Ids are as pyiceberg numbers a new table's; the service appends the columns after these at start-up.
    """
    fields = []
    for i, c in enumerate(COLUMNS, start=1):
        kind = iceberg_type(c.arrow)
        if kind is None:
            break
        fields.append(IcebergField(i, c.name, kind, c.comment[:_COMMENT_MAX] or None))
    return fields


def outcome_fields() -> list[IcebergField]:
    """The outcomes table's fields: OUTCOME_SCHEMA in order, ids from 1, required where the schema says so."""
    return [
        IcebergField(i, f.name, _primitive(f.type), OUTCOME_COMMENTS[f.name][:_COMMENT_MAX], not f.nullable)
        for i, f in enumerate(OUTCOME_SCHEMA, start=1)
    ]


def _primitive(arrow: pa.DataType) -> str:
    kind = iceberg_type(arrow)
    if kind is None:
        raise ValueError(f"the outcomes table has primitive columns only, not {arrow}")
    return kind


def outcomes_table_name(environment: str) -> str:
    """The outcomes table (and its key prefix) of an environment: the service's own name in Glue."""
    return f"{OUTCOMES_TABLE}_{environment}"


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
    """Lake bucket + Glue database and Iceberg table + Athena workgroup with its results bucket."""

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
        self.table_name = config.table_name
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=account,
            database_name=self.database_name,
            name=self.table_name,
            open_table_format_input=self._iceberg_input(self.location, iceberg_fields()),
        )
        self.table.add_resource_dependency(database)  # the table needs its database
        # Beside the predictions' prefix, as the service derives it (leadscore.outcomes.table.outcomes_table_config).
        self.outcomes_table_name = outcomes_table_name(config.name)
        self.outcomes_location = f"s3://{self.bucket.bucket_name}/{self.outcomes_table_name}"
        self.outcomes_table = glue.CfnTable(
            self,
            "OutcomesTable",
            catalog_id=account,
            database_name=self.database_name,
            name=self.outcomes_table_name,
            open_table_format_input=self._iceberg_input(self.outcomes_location, outcome_fields()),
        )
        self.outcomes_table.add_resource_dependency(database)

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
    def _iceberg_input(location: str, fields: list[IcebergField]) -> glue.CfnTable.OpenTableFormatInputProperty:
        """Glue's Iceberg CREATE: format v2, the table's schema, identity partitions on year/month/day."""
        ids = {field.name: field.id for field in fields}
        return glue.CfnTable.OpenTableFormatInputProperty(
            iceberg_input=glue.CfnTable.IcebergInputProperty(
                metadata_operation="CREATE",
                version=ICEBERG_FORMAT_VERSION,
                iceberg_table_input=glue.CfnTable.IcebergTableInputProperty(
                    location=location,
                    schema=glue.CfnTable.IcebergSchemaProperty(
                        type="struct",
                        schema_id=0,
                        fields=[
                            glue.CfnTable.IcebergStructFieldProperty(
                                id=f.id, name=f.name, type=f.type, required=f.required, doc=f.doc
                            )
                            for f in fields
                        ],
                    ),
                    partition_spec=glue.CfnTable.IcebergPartitionSpecProperty(
                        spec_id=0,
                        fields=[
                            glue.CfnTable.IcebergPartitionFieldProperty(
                                name=name,
                                source_id=ids[name],
                                transform="identity",
                                field_id=PARTITION_FIELD_ID_START + offset,
                            )
                            for offset, name in enumerate(DAY_COLUMNS)
                        ],
                    ),
                    properties=dict(ICEBERG_PROPERTIES),
                ),
            )
        )
