"""The lake's uses of library internals, each in one place with a test pinned to the version it was written for.

- pyiceberg 0.12 has no public call that writes data files for a snapshot built by hand (compaction replaces exact
  files in one snapshot: `Transaction.overwrite` deletes by filter, which would also delete rows appended to the
  partition meanwhile). `write_data_files` wraps its internal writer.
- The AWS SDK inside pyarrow reads its checksum policy from the environment only: there is no per-client option.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import pyarrow as pa

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Transaction

PYICEBERG_WRITER_VERSIONS: Final = ("0.12.",)


def write_data_files(transaction: Transaction, rows: pa.Table) -> Iterable[DataFile]:
    """Write `rows` as data files of the transaction's table (partitioned by its spec), not yet committed."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files  # noqa: PLC0415 - internal: see the module docstring

    return _dataframe_to_data_files(
        table_metadata=transaction.table_metadata, df=rows, io=transaction._table.io, write_uuid=uuid.uuid4()
    )


def s3_checksums_when_required(setting: bool | None, endpoint_url: str | None) -> None:
    """Ask the AWS SDK for checksums only where required (S3-compatible stores reject aws-chunked CRC uploads).

    `setting` None means: only for a custom endpoint (AWS itself accepts both).
    """
    if setting if setting is not None else endpoint_url is not None:
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
