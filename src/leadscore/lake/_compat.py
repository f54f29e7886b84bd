"""The lake's uses of library internals, each in one place with a test pinned to the version it was written for.

- pyiceberg 0.12 has no public call that writes data files for a snapshot built by hand (compaction replaces exact
  files in one snapshot: `Transaction.overwrite` deletes by filter, which would also delete rows appended to the
  partition meanwhile). `write_data_files` wraps its internal writer.
- Nor one that streams record batches into a partitioned table: its writer takes one Arrow table (a commit's every
  row, then a copy per partition). `StreamingDataFiles` feeds its per-file writer batch by batch instead, one
  open file per partition, so a commit's memory is bounded by a row group, not by the commit's rows.
- Both split rows by partition with pyiceberg's `_determine_partitions`, which groups on the partition values and
  filters the rows once per partition: for a commit's rows, which nearly always share one day, the split was a
  third of the committer's CPU (0.32 of 1.02 CPU-s for 72,000 rows) for nothing. `StreamingDataFiles` sends a
  batch whose rows share their partition (`_single_partition`) to that partition's file directly; compaction,
  rare and one day at a time, keeps pyiceberg's writer as it is.
- Its Parquet writer dictionary-encodes every column, with no property to say which: `StreamingDataFiles` sets
  its writer's options to the text columns only (`_dictionary_for_text_only`).
- The AWS SDK inside pyarrow reads its checksum policy from the environment only: there is no per-client option.
- `Transaction.table_metadata` replays the staged updates and deep-copies the whole table metadata, every snapshot
  included, on every read, and a commit reads it a dozen times: a commit's CPU followed the table's history (0.55 s
  per one-segment commit at 250 snapshots, 70% of it those copies). `transaction(table)` is a `Transaction` whose
  property computes once per state of the transaction, the change of apache/iceberg-python#3302 (approved there,
  closed unmerged by the stale bot and again as #3784; #2673 is open).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyiceberg.io import FileIO, OutputFile
    from pyiceberg.io.fileformat import FileFormatWriter
    from pyiceberg.manifest import DataFile
    from pyiceberg.partitioning import PartitionKey
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.metadata import TableMetadata

PYICEBERG_WRITER_VERSIONS: Final = ("0.12.",)
# Rows a partition's file takes in one write (one Parquet row group): what a commit holds in memory per partition
# beyond the batch being converted (flush.CHUNK_ROWS). Far below pyiceberg's 1M-row limit, which would hold a whole
# commit; `leadscore lake compact` rewrites a day's files with large row groups. Smaller groups cost the committer
# CPU (96,000 distinct lake rows: 4.5 us per row written in groups of 10,000, 3.9 in groups of 25,000, 3.4 in one).
ROW_GROUP_ROWS: Final = 25_000


def transaction(table: Table) -> Transaction:
    """`table.transaction()`, whose `table_metadata` is computed once per state, not on every read."""
    return _cached_transaction_class()(table)


@functools.cache
def _cached_transaction_class() -> type[Transaction]:
    from pyiceberg.table import Transaction, update  # noqa: PLC0415 - see the module docstring

    class CachedTransaction(Transaction):
        """A transaction whose metadata is replayed again only when the table's metadata or the staged updates change.

        Both are replaced, never changed in place: `_updates` is a tuple rebound by every staged update, and a
        refresh or commit gives the table a new metadata object. So identity is the cache's key, as in #3302.
        """

        _cached: tuple[object, object, TableMetadata] | None = None

        @property
        def table_metadata(self) -> TableMetadata:
            base, updates = self._table.metadata, self._updates
            cached = self._cached
            if cached is None or cached[0] is not base or cached[1] is not updates:
                cached = (base, updates, update.update_table_metadata(base, updates))
                self._cached = cached
            return cached[2]

    return CachedTransaction


def write_data_files(transaction: Transaction, rows: pa.Table) -> Iterable[DataFile]:
    """Write `rows` as data files of the transaction's table (partitioned by its spec), not yet committed."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files  # noqa: PLC0415 - internal: see the module docstring

    return _dataframe_to_data_files(
        table_metadata=transaction.table_metadata, df=rows, io=transaction._table.io, write_uuid=uuid.uuid4()
    )


def _single_partition(metadata: TableMetadata, rows: pa.Table) -> PartitionKey | None:
    """The partition of every row when the spec is identity transforms only and the rows share their values."""
    from pyiceberg.partitioning import PartitionFieldValue, PartitionKey  # noqa: PLC0415 - see the module docstring
    from pyiceberg.transforms import IdentityTransform  # noqa: PLC0415

    spec, schema = metadata.spec(), metadata.schema()
    if spec.is_unpartitioned() or rows.num_rows == 0:
        return None
    values = []
    for spec_field in spec.fields:
        name = schema.find_column_name(spec_field.source_id)
        if not isinstance(spec_field.transform, IdentityTransform) or name is None or name not in rows.column_names:
            return None
        column = rows[name]
        if column.null_count:
            return None
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low != high:
            return None
        values.append(PartitionFieldValue(field=spec_field, value=low))
    return PartitionKey(field_values=values, partition_spec=spec, schema=schema)


def _dictionary_for_text_only(writer: FileFormatWriter, text_columns: list[str]) -> None:
    """Dictionary-encode the text columns only, not the numbers: pyiceberg's writer encodes every column.

    The lake's numbers (confidence, probabilities, raw and engineered inputs) are nearly all distinct: Parquet
    starts a dictionary for each, gives up at its size limit and writes the column plainly. Measured on 500-lead
    rows (bench/request_cost.py's bodies, 78,000 rows): 2.83 -> 2.37 us per row written, and 222 -> 204 bytes per
    row. pyiceberg has no table property for it, so it is set on the writer's Parquet options (its `_`-named
    attribute; where that is gone, the files keep pyiceberg's setting, and tests/lake/test__compat.py fails).
    """
    options = getattr(writer, "_parquet_writer_kwargs", None)
    if isinstance(options, dict):
        options["use_dictionary"] = text_columns


@dataclass(slots=True)
class _OpenFile:
    key: PartitionKey | None
    path: str
    output: OutputFile
    writer: FileFormatWriter
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0
    written: bool = False


class StreamingDataFiles:
    """Data files of a table written batch by batch: one file per partition, closed by `finish()` (not committed).

    The files are the ones pyiceberg's own writer would make (its file schema with field ids, its Parquet settings,
    its statistics and locations), in row groups of at most ROW_GROUP_ROWS.
    """

    def __init__(self, table_metadata: TableMetadata, io: FileIO, schema: pa.Schema) -> None:
        # Internal, see the module docstring.
        from pyiceberg.io.fileformat import FileFormatFactory  # noqa: PLC0415
        from pyiceberg.io.pyarrow import pyarrow_to_schema  # noqa: PLC0415
        from pyiceberg.manifest import FileFormat  # noqa: PLC0415
        from pyiceberg.schema import sanitize_column_names  # noqa: PLC0415
        from pyiceberg.table.locations import load_location_provider  # noqa: PLC0415
        from pyiceberg.types import StringType  # noqa: PLC0415

        self._metadata = table_metadata
        self._io = io
        self._format = FileFormatFactory.get(FileFormat.PARQUET)
        self._file_schema = sanitize_column_names(table_metadata.schema())
        self._batch_schema = pyarrow_to_schema(
            schema, name_mapping=table_metadata.schema().name_mapping, format_version=table_metadata.format_version
        )
        self._locations = load_location_provider(table_metadata.location, table_metadata.properties)
        self._uuid = uuid.uuid4()
        self._counter = itertools.count()
        self._files: dict[str, _OpenFile] = {}
        # (batch schema, file schema) when converting a batch only relabels its columns (see _in_file_schema).
        self._same_columns: tuple[pa.Schema, pa.Schema] | None = None
        self._text_columns = [f.name for f in self._file_schema.fields if isinstance(f.field_type, StringType)]

    def write(self, batch: pa.RecordBatch) -> None:
        """Add the batch's rows to the files of their partitions."""
        from pyiceberg.io.pyarrow import _determine_partitions  # noqa: PLC0415 - internal, see the module docstring

        if not batch.num_rows:
            return
        rows = pa.Table.from_batches([batch])
        spec = self._metadata.spec()
        if spec.is_unpartitioned():
            self._add(None, rows)
            return
        key = _single_partition(self._metadata, rows)
        if key is not None:
            self._add(key, rows)
            return
        for part in _determine_partitions(spec=spec, schema=self._metadata.schema(), arrow_table=rows):
            self._add(part.partition_key, part.arrow_table_partition)

    def _add(self, key: PartitionKey | None, rows: pa.Table) -> None:
        from pyiceberg.io.pyarrow import _to_requested_schema  # noqa: PLC0415 - internal, see the module docstring
        from pyiceberg.table import WriteTask  # noqa: PLC0415

        name = key.to_path() if key is not None else ""
        open_file = self._files.get(name)
        if open_file is None:
            task = WriteTask(self._uuid, next(self._counter), self._batch_schema, [], partition_key=key)
            path = self._locations.new_data_location(task.generate_data_file_filename("parquet"), key)
            output = self._io.new_output(path)
            writer = self._format.create_writer(output, self._file_schema, self._metadata.properties)
            _dictionary_for_text_only(writer, self._text_columns)
            open_file = self._files[name] = _OpenFile(key, path, output, writer)
        for batch in rows.to_batches():
            open_file.pending.append(self._in_file_schema(batch, _to_requested_schema))
            open_file.pending_rows += batch.num_rows
        if open_file.pending_rows >= ROW_GROUP_ROWS:
            self._flush(open_file)

    def _in_file_schema(self, batch: pa.RecordBatch, convert: Callable[..., pa.RecordBatch]) -> pa.RecordBatch:
        """The batch in the file's schema (field ids), as pyiceberg's `_to_requested_schema` makes it.

        That conversion walks every column in Python (about 3 ms for the lake's 137 columns, per batch). When its
        answer for the first batch holds the very same columns under new field metadata, later batches of the same
        schema get that schema without the walk; anything else is converted as pyiceberg does.
        """
        if self._same_columns is not None and batch.schema.equals(self._same_columns[0]):
            return pa.RecordBatch.from_arrays(batch.columns, schema=self._same_columns[1])
        converted: pa.RecordBatch = convert(
            requested_schema=self._file_schema,
            file_schema=self._batch_schema,
            batch=batch,
            include_field_ids=True,
            format_model=self._format,
        )
        if self._same_columns is None:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError):  # another type somewhere: keep converting
                relabelled = pa.RecordBatch.from_arrays(batch.columns, schema=converted.schema)
                if relabelled.equals(converted, check_metadata=True):
                    self._same_columns = (batch.schema, converted.schema)
        return converted

    @staticmethod
    def _flush(open_file: _OpenFile) -> None:
        if open_file.pending:
            open_file.writer.write(pa.Table.from_batches(open_file.pending))
            open_file.written = True
        open_file.pending.clear()
        open_file.pending_rows = 0

    def finish(self) -> list[DataFile]:
        """Close every file; their data files, ready to be added to a snapshot."""
        from pyiceberg.manifest import DataFile, DataFileContent, FileFormat  # noqa: PLC0415
        from pyiceberg.typedef import Record  # noqa: PLC0415

        done = []
        for open_file in self._files.values():
            self._flush(open_file)
            if not open_file.written:
                continue
            statistics = open_file.writer.close()
            done.append(
                DataFile.from_args(
                    content=DataFileContent.DATA,
                    file_path=open_file.path,
                    file_format=FileFormat.PARQUET,
                    partition=open_file.key.partition if open_file.key is not None else Record(),
                    file_size_in_bytes=len(open_file.output),
                    sort_order_id=None,
                    spec_id=self._metadata.default_spec_id,
                    equality_ids=None,
                    key_metadata=None,
                    **statistics.to_serialized_dict(),
                )
            )
        return done

    def discard(self) -> None:
        """Close and delete every file (nothing of them is committed): a failed commit leaves no files behind."""
        for open_file in self._files.values():
            with contextlib.suppress(OSError, ValueError, pa.ArrowException):  # a half-written file goes anyway
                open_file.writer.close()
            with contextlib.suppress(OSError):  # the store is down: the file is left unreferenced, as after a crash
                self._io.delete(open_file.path)
        self._files.clear()


def s3_checksums_when_required(setting: bool | None, endpoint_url: str | None) -> None:
    """Ask the AWS SDK for checksums only where required (S3-compatible stores reject aws-chunked CRC uploads).

    `setting` None means: only for a custom endpoint (AWS itself accepts both).
    """
    if setting if setting is not None else endpoint_url is not None:
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
