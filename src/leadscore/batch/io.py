"""Files in and out of a batch run: CSV or Parquet, local or `s3://`, read and written in chunks.

The reader yields Arrow batches of the lead fields. CSV cells are read as text (an empty cell is null) and typed
by the scoring core as the API types them (`15`, `FALSE`, `No`), so a cell that is no number rejects its row with
the API's message instead of stopping the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from leadscore.batch.options import DEFAULT_CHUNK_ROWS, FileFormat
from leadscore.errors import LeadscoreError
from leadscore.features.spec import INPUT_FIELDS, Kind
from leadscore.lake._compat import s3_checksums_when_required

# The columns a batch reads: the API's lead fields by the same names (custom features as flat columns).
LEAD_COLUMNS: Final = ("lead_id", *(f.name for f in INPUT_FIELDS))
# Picklists and titles: few distinct values, each repeated over many rows (not lead_id, one per row).
_TEXT_COLUMNS: Final = frozenset(f.name for f in INPUT_FIELDS if f.kind in (Kind.CATEGORY, Kind.TEXT))
_CSV_BLOCK_BYTES: Final = 4 << 20
PARTIAL_SUFFIX: Final = ".partial"  # an output file being written, renamed when finished


class BatchInputError(LeadscoreError):
    """An input or output file cannot be used (missing, unreadable, unknown format)."""


def file_format(path: str, given: FileFormat | None = None) -> FileFormat:
    """The format of `path`: `given`, else from its extension (.csv, .parquet/.pq)."""
    if given is not None:
        return given
    name = urlparse(path).path.lower() if path.startswith("s3://") else path.lower()
    if name.endswith(".csv"):
        return FileFormat.CSV
    if name.endswith((".parquet", ".pq")):
        return FileFormat.PARQUET
    raise BatchInputError(f"cannot tell the format of {path}: name it .csv or .parquet, or pass --format")


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding `path` and the path within it (`s3://bucket/key`: S3, from the AWS env variables)."""
    if not path.startswith("s3://"):
        return pafs.LocalFileSystem(), os.path.abspath(path)  # noqa: PTH100 - a string path for pyarrow
    # AWS_ENDPOINT_URL(_S3) points at an S3-compatible store; keys and region come from the SDK's usual chain.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, str] = {}
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or endpoint
        options["scheme"] = parsed.scheme or "https"
        s3_checksums_when_required(None, endpoint)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options), path.removeprefix("s3://")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive input rows start..start+size-1 (0-based data rows of the input)."""

    start: int
    rows: pa.Table | pa.RecordBatch
    progress: int  # how far the reader is, in the reader's unit (rows or bytes)

    @property
    def size(self) -> int:
        """Rows in the chunk."""
        return int(self.rows.num_rows)


class Reader(Protocol):
    """Chunks of an input file, and how far along the reader is."""

    unit: str  # "rows" or "bytes"
    total: int | None  # the input's size in that unit, when known

    def chunks(self) -> Iterator[Chunk]:
        """The input's rows, in order, in chunks of at most the chunk size."""
        ...


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly `rows` rows (the last one shorter): chunk boundaries do not depend on the reader's."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)  # noqa: PLW2901 - the rest of the same batch
            if held == rows:
                yield _joined(pending)
                pending, held = [], 0
    if held:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:  # the usual case (a reader's batches of the chunk size): no copy
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class ParquetReader:
    """A Parquet file's lead columns in chunks (the total is in its metadata).

    Where the row groups are no larger than two chunks, a chunk is a run of whole row groups, read as they are
    (no slicing and joining of batches); larger row groups are read in batches and cut into chunks.
    """

    unit = "rows"

    def __init__(self, path: str, chunk_rows: int) -> None:
        fs, inner = filesystem(path)
        try:
            source = fs.open_input_file(inner)
            metadata = pq.read_metadata(source)  # the footer, read once (ParquetFile is given it)
            schema = metadata.schema.to_arrow_schema()
            # Text columns read as Arrow dictionaries, as Parquet stores them: the core checks and encodes each
            # distinct value once (leadscore.columnar), and their strings are never decoded row by row.
            strings = [f.name for f in schema if f.name in _TEXT_COLUMNS and pa.types.is_string(f.type)]
            # No pre-buffering: it holds whole row groups' column chunks ahead, about twice the reader's memory.
            self._file = pq.ParquetFile(source, metadata=metadata, pre_buffer=False, read_dictionary=strings)
        except (OSError, pa.ArrowInvalid) as exc:
            raise BatchInputError(f"cannot read {path} as Parquet: {exc}") from exc
        names = set(self._file.schema_arrow.names)
        self._columns = [c for c in (*LEAD_COLUMNS, "custom_features") if c in names]
        self.total: int | None = self._file.metadata.num_rows
        self._chunk_rows = chunk_rows

    def chunks(self) -> Iterator[Chunk]:
        """The rows in chunks, in order."""
        metadata = self._file.metadata
        sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        if sizes and max(sizes) <= 2 * self._chunk_rows:
            yield from self._parts(sizes)
            return
        start = 0
        # Decoded in the reading thread alone: Arrow's thread pool, woken for every column of every batch, cost
        # 4x the CPU of decoding here (1 M rows in 65,536-row groups, 16,384-row batches: 1.7 -> 0.3 CPU-s), and
        # the run's scoring threads keep both cores busy already.
        batches = self._file.iter_batches(batch_size=self._chunk_rows, columns=self._columns, use_threads=False)
        for batch in _rechunk(batches, self._chunk_rows):
            start += batch.num_rows
            yield Chunk(start - batch.num_rows, batch, start)

    def _parts(self, sizes: list[int]) -> Iterator[Chunk]:
        start = held = 0
        groups: list[int] = []
        for group, size in enumerate(sizes):
            if groups and held + size > self._chunk_rows:
                yield self._part(start, groups, held)
                start, groups, held = start + held, [], 0
            groups.append(group)
            held += size
        if groups:
            yield self._part(start, groups, held)

    def _part(self, start: int, groups: list[int], rows: int) -> Chunk:
        table = self._file.read_row_groups(groups, columns=self._columns)
        return Chunk(start, table, start + rows)


class CsvReader:
    """A CSV file streamed in blocks; every lead column is read as text (the core types it as the API does)."""

    unit = "bytes"

    def __init__(self, path: str, chunk_rows: int) -> None:
        fs, inner = filesystem(path)
        try:
            self.total: int | None = fs.get_file_info(inner).size
            self._stream = fs.open_input_file(inner)
            self._reader = pacsv.open_csv(
                self._stream,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    # Text: the core reads numbers and booleans from it; a bad cell rejects its row, not the file.
                    column_types=dict.fromkeys(LEAD_COLUMNS, pa.string()),
                    include_columns=list(LEAD_COLUMNS),
                    include_missing_columns=True,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except (OSError, pa.ArrowInvalid) as exc:
            raise BatchInputError(f"cannot read {path} as CSV: {exc}") from exc
        self._chunk_rows = chunk_rows

    def chunks(self) -> Iterator[Chunk]:
        """The rows in chunks, with the bytes read so far."""
        start = 0
        for batch in _rechunk(iter(self._reader), self._chunk_rows):
            start += batch.num_rows
            yield Chunk(start - batch.num_rows, batch, self._stream.tell())


def open_reader(path: str, fmt: FileFormat, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Reader:
    """A reader of `path` in chunks of `chunk_rows`."""
    if fmt is FileFormat.PARQUET:
        return ParquetReader(path, chunk_rows)
    return CsvReader(path, chunk_rows)


class Writer(Protocol):
    """Writes tables to one output file as they come."""

    def write(self, table: pa.Table) -> None:
        """Append rows."""
        ...

    def close(self) -> None:
        """Finish the file: it appears under its name now, whole."""
        ...

    def abort(self) -> None:
        """Drop what was written: a failed or interrupted run leaves no file under the output's name."""
        ...


class _Staged:
    """A file written as `<path>.partial` and moved to `path` once finished (a rename on a local disk).

    A run that fails or is interrupted never leaves a truncated file under the output's name: it deletes the
    partial file, and one killed outright (SIGKILL, power loss) leaves it under the `.partial` name.
    """

    def __init__(self, path: str) -> None:
        self._fs, self._inner = filesystem(path)
        _make_parent(self._fs, self._inner)
        self._partial = self._inner + PARTIAL_SUFFIX

    def _finish(self) -> None:
        self._fs.move(self._partial, self._inner)

    def _discard(self) -> None:
        with suppress(OSError):
            self._fs.delete_file(self._partial)


class ParquetWriter(_Staged):
    """A Parquet output file, one row group per chunk written; `dictionary`: the columns to dictionary-encode."""

    def __init__(self, path: str, schema: pa.Schema, dictionary: list[str] | None = None) -> None:
        super().__init__(path)
        self._writer = pq.ParquetWriter(
            self._partial,
            schema,
            filesystem=self._fs,
            compression="zstd",
            use_dictionary=True if dictionary is None else dictionary,
        )

    def write(self, table: pa.Table) -> None:
        """Append rows."""
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file (its footer) and give it its name."""
        self._writer.close()
        self._finish()

    def abort(self) -> None:
        """Close and delete the partial file."""
        with suppress(OSError, pa.ArrowException):
            self._writer.close()
        self._discard()


class CsvWriter(_Staged):
    """A CSV output file with a header line."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        super().__init__(path)
        self._stream = self._fs.open_output_stream(self._partial)
        self._schema = _csv_schema(schema)
        self._writer = pacsv.CSVWriter(self._stream, self._schema)

    def write(self, table: pa.Table) -> None:
        """Append rows."""
        self._writer.write_table(_csv_table(table, self._schema))

    def close(self) -> None:
        """Finish the file and give it its name."""
        self._writer.close()
        self._stream.close()
        self._finish()

    def abort(self) -> None:
        """Close and delete the partial file."""
        with suppress(OSError, pa.ArrowException):
            self._writer.close()
            self._stream.close()
        self._discard()


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    # CSV has no lists: list columns (explain reasons) are written as `a|b|c` text.
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_list(f.type) else f for f in schema])


def _csv_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for field in table.schema:
        column = table[field.name]
        if pa.types.is_list(field.type):
            column = pc.binary_join(pc.cast(column, pa.list_(pa.string())), "|")
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def remove_partial(path: str) -> None:
    """Delete `<path>.partial` if it is there.

    A writer interrupted while it opened (a signal between the file's creation and the writer's return) has no
    writer object to abort it.
    """
    fs, inner = filesystem(path)
    with suppress(OSError):
        fs.delete_file(inner + PARTIAL_SUFFIX)


def open_writer(path: str, fmt: FileFormat, schema: pa.Schema, dictionary: list[str] | None = None) -> Writer:
    """A writer of `schema` rows to `path`; `dictionary`: the Parquet columns to dictionary-encode (default all)."""
    try:
        if fmt is FileFormat.PARQUET:
            return ParquetWriter(path, schema, dictionary)
        return CsvWriter(path, schema)
    except OSError as exc:
        raise BatchInputError(f"cannot write {path}: {exc}") from exc


def _make_parent(fs: pafs.FileSystem, inner: str) -> None:
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(os.path.dirname(inner), recursive=True)  # noqa: PTH120 - a string path for pyarrow
