"""The lake's uses of library internals, each in one place with a test pinned to the version it was written for.

- pyiceberg 0.12 has no public call that writes data files for a snapshot built by hand (compaction replaces exact
  files in one snapshot: `Transaction.overwrite` deletes by filter, which would also delete rows appended to the
  partition meanwhile). `write_data_files` wraps its internal writer.
- That writer splits a partitioned table by grouping on the partition values and filtering the whole table once
  per partition: for a commit's rows, which nearly always share one day, the split was a third of the committer's
  CPU (0.32 of 1.02 CPU-s for 72,000 rows) for nothing. `write_data_files` writes such rows as that one
  partition's files directly, with the internal writer's own tasks.
- The AWS SDK inside pyarrow reads its checksum policy from the environment only: there is no per-client option.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.partitioning import PartitionKey
    from pyiceberg.table import Transaction
    from pyiceberg.table.metadata import TableMetadata

PYICEBERG_WRITER_VERSIONS: Final = ("0.12.",)


def write_data_files(transaction: Transaction, rows: pa.Table) -> Iterable[DataFile]:
    """Write `rows` as data files of the transaction's table (partitioned by its spec), not yet committed."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files  # noqa: PLC0415 - internal: see the module docstring

    metadata = transaction.table_metadata
    key = _single_partition(metadata, rows)
    if key is not None:
        return _write_one_partition(transaction, rows, key)
    return _dataframe_to_data_files(table_metadata=metadata, df=rows, io=transaction._table.io, write_uuid=uuid.uuid4())


def _single_partition(metadata: TableMetadata, rows: pa.Table) -> PartitionKey | None:
    """The partition of every row when the spec is identity transforms only and the rows share their values."""
    from pyiceberg.partitioning import PartitionFieldValue, PartitionKey  # noqa: PLC0415 - see the module docstring
    from pyiceberg.transforms import IdentityTransform  # noqa: PLC0415

    spec, schema = metadata.spec(), metadata.schema()
    if spec.is_unpartitioned() or rows.num_rows == 0:
        return None
    values = []
    for field in spec.fields:
        name = schema.find_column_name(field.source_id)
        if not isinstance(field.transform, IdentityTransform) or name is None or name not in rows.column_names:
            return None
        column = rows[name]
        if column.null_count:
            return None
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low != high:
            return None
        values.append(PartitionFieldValue(field=field, value=low))
    return PartitionKey(field_values=values, partition_spec=spec, schema=schema)


def _write_one_partition(transaction: Transaction, rows: pa.Table, key: PartitionKey) -> Iterable[DataFile]:
    """The partitioned branch of pyiceberg's `_dataframe_to_data_files`, for rows all in partition `key`."""
    from pyiceberg.io.pyarrow import (  # noqa: PLC0415 - internal: see the module docstring
        bin_pack_arrow_table,
        pyarrow_to_schema,
        write_file,
    )
    from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE, TableProperties, WriteTask  # noqa: PLC0415
    from pyiceberg.utils.config import Config  # noqa: PLC0415
    from pyiceberg.utils.properties import property_as_int  # noqa: PLC0415

    metadata = transaction.table_metadata
    target: int = property_as_int(  # type: ignore[assignment] # set: the default is not None
        properties=metadata.properties,
        property_name=TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        default=TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )
    task_schema = pyarrow_to_schema(
        rows.schema,
        name_mapping=metadata.schema().name_mapping,
        downcast_ns_timestamp_to_us=Config().get_bool(DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE) or False,
        format_version=metadata.format_version,
    )
    write_uuid = uuid.uuid4()
    tasks = (
        WriteTask(write_uuid=write_uuid, task_id=task_id, record_batches=batches, partition_key=key, schema=task_schema)
        for task_id, batches in enumerate(bin_pack_arrow_table(rows, target))
    )
    return write_file(io=transaction._table.io, table_metadata=metadata, tasks=tasks)


def s3_checksums_when_required(setting: bool | None, endpoint_url: str | None) -> None:
    """Ask the AWS SDK for checksums only where required (S3-compatible stores reject aws-chunked CRC uploads).

    `setting` None means: only for a custom endpoint (AWS itself accepts both).
    """
    if setting if setting is not None else endpoint_url is not None:
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
