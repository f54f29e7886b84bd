"""Files in and out of a batch run: CSV or Parquet, local or `s3://`, read and written in chunks.

The reader yields Arrow batches of the lead fields. CSV cells are read as text (an empty cell is null) and typed
by the scoring core as the API types them (`15`, `FALSE`, `No`), so a cell that is no number rejects its row with
the API's message instead of stopping the file.
"""

from __future__ import annotations

import codecs
import csv
import functools
import os
from collections.abc import Iterator, Mapping, Sequence
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
from leadscore.columns import LEAD_COLUMNS, ColumnPlan, plan_columns
from leadscore.errors import LeadscoreError
from leadscore.features.spec import INPUT_FIELDS, Kind
from leadscore.lake._compat import s3_checksums_when_required

# Picklists and titles: few distinct values, each repeated over many rows (not lead_id, one per row).
_TEXT_COLUMNS: Final = frozenset(f.name for f in INPUT_FIELDS if f.kind in (Kind.CATEGORY, Kind.TEXT))
_CSV_BLOCK_BYTES: Final = 4 << 20
# A CSV header longer than this is refused (a file that is not CSV, or has no line breaks).
_CSV_HEADER_MAX_BYTES: Final = 1 << 20
PARTIAL_SUFFIX: Final = ".partial"  # an output file being written, renamed when finished
# S3 URIs: `s3://` (AWS's, EMR's and Glue's), and `s3a://` as open-source Spark and Hadoop write them.
S3_SCHEMES: Final = ("s3://", "s3a://")


class BatchInputError(LeadscoreError):
    """An input or output file cannot be used (missing, unreadable, unknown format)."""


UTF8: Final = "utf-8"
# What a CSV file that is not UTF-8 gets told, where Arrow (or Python) finds bytes that are not.
_ENCODING_HINT: Final = (
    "the file is not UTF-8: name its encoding with --encoding (cp1252 for a CSV that Excel saved on Windows, "
    "latin-1, ...)"
)


def encoding_hint(exc: BaseException) -> str:
    """`; <what to do>` when `exc` is a read failing on bytes that are not UTF-8 (Arrow's or Python's), else ``."""
    not_utf8 = isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in str(exc)
    return f"; {_ENCODING_HINT}" if not_utf8 else ""


def input_encoding(name: str | None, csv_input: bool) -> str:
    """The codec an input is read in (`csv_encoding`); an encoding named for a Parquet input is refused."""
    codec = csv_encoding(name)
    if not csv_input and codec != UTF8:
        raise BatchInputError(f"--encoding {name} is for CSV input: Parquet text is always UTF-8")
    return codec


def csv_encoding(name: str | None) -> str:
    """The codec a CSV input is read in (None: UTF-8), refused unless its quotes, commas and line breaks are ASCII.

    The header is found by looking for those bytes (`_header_end`), and Arrow reads the rest through a transcoder
    to UTF-8: UTF-16 and UTF-32 files (Excel's "Unicode text") are refused with what to do instead.
    """
    if name is None:
        return UTF8
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise BatchInputError(f"unknown encoding {name!r}: e.g. utf-8, cp1252, latin-1") from None
    if codec in (UTF8, "utf-8-sig"):
        return UTF8  # a byte order mark is dropped either way
    if '",\n\r'.encode(codec, errors="replace") != b'",\n\r':
        raise BatchInputError(f"cannot read {name} CSV: convert it to UTF-8 first (iconv -f {name} -t utf-8)")
    return codec


def file_format(path: str, given: FileFormat | None = None) -> FileFormat:
    """The format of `path`: `given`, else from its extension (.csv, .parquet/.pq)."""
    if given is not None:
        return given
    name = urlparse(path).path.lower() if is_s3(path) else path.lower()
    if name.endswith(".csv"):
        return FileFormat.CSV
    if name.endswith((".parquet", ".pq")):
        return FileFormat.PARQUET
    raise BatchInputError(f"cannot tell the format of {path}: name it .csv or .parquet, or pass --format")


def is_s3(path: str) -> bool:
    """Whether `path` is an S3 URI (`s3://bucket/key` or `s3a://bucket/key`)."""
    return path.startswith(S3_SCHEMES)


def inner_path(path: str) -> str:
    """`path` within its filesystem (`filesystem`): `bucket/key` for an S3 URI, the absolute path of a local one."""
    return path.split("://", 1)[1] if is_s3(path) else os.path.abspath(path)  # noqa: PTH100 - a string for pyarrow


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding `path` and the path within it (`s3://bucket/key`: S3, from the AWS env variables)."""
    if not is_s3(path):
        return pafs.LocalFileSystem(), inner_path(path)
    # AWS_ENDPOINT_URL(_S3) points at an S3-compatible store; keys and region come from the SDK's usual chain.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, str] = {}
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or endpoint
        options["scheme"] = parsed.scheme or "https"
        s3_checksums_when_required(None, endpoint)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region and not endpoint:
        region = bucket_region(inner_path(path).split("/", 1)[0])
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options), inner_path(path)


@functools.cache
def bucket_region(bucket: str) -> str | None:
    """The AWS region `bucket` is in, asked of S3 once a process (None where S3 cannot be asked: the SDK's default).

    For a process that is told no region (an EMR executor, a laptop): the SDK would address every bucket in its
    default region, us-east-1, and S3 answers a request for a bucket elsewhere with a redirect that pyarrow reports
    as an error (HTTP 301). Fargate tasks and Glue jobs are given AWS_REGION and never ask.
    """
    try:
        return str(pafs.resolve_s3_region(bucket))
    except (OSError, ValueError):  # no route to S3 (offline, a private subnet): left to the SDK, as before
        return None


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
    plan: ColumnPlan  # which of its columns are read, as which lead fields

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
    (no slicing and joining of batches); larger row groups are read in batches and cut into chunks. `row_groups`
    reads only those row groups (in their order), as a task of a rescoring job given a part of a file does.
    """

    unit = "rows"

    def __init__(
        self,
        path: str,
        chunk_rows: int,
        renames: Mapping[str, str] | None = None,
        row_groups: Sequence[int] | None = None,
    ) -> None:
        fs, inner = filesystem(path)
        try:
            source = fs.open_input_file(inner)
            metadata = pq.read_metadata(source)  # the footer, read once (ParquetFile is given it)
            schema = metadata.schema.to_arrow_schema()
            self.plan = plan_columns(path, schema.names, renames)
            # Text columns read as Arrow dictionaries, as Parquet stores them: the core checks and encodes each
            # distinct value once (leadscore.columnar), and their strings are never decoded row by row.
            strings = [
                f.name for f in schema if self.plan.reads.get(f.name) in _TEXT_COLUMNS and pa.types.is_string(f.type)
            ]
            # No pre-buffering: it holds whole row groups' column chunks ahead, about twice the reader's memory.
            self._file = pq.ParquetFile(source, metadata=metadata, pre_buffer=False, read_dictionary=strings)
        except (OSError, pa.ArrowInvalid) as exc:
            raise BatchInputError(f"cannot read {path} as Parquet: {exc}") from exc
        self._columns = list(self.plan.reads)
        # The read columns under their lead field names (None: every one has its name already).
        names = list(self.plan.reads.values())
        self._names = names if names != self._columns else None
        self._groups = list(range(metadata.num_row_groups)) if row_groups is None else list(row_groups)
        self.total: int | None = sum(metadata.row_group(i).num_rows for i in self._groups)
        self._chunk_rows = chunk_rows

    def chunks(self) -> Iterator[Chunk]:
        """The rows in chunks, in order."""
        metadata = self._file.metadata
        sizes = [metadata.row_group(i).num_rows for i in self._groups]
        if sizes and max(sizes) <= 2 * self._chunk_rows:
            yield from self._parts(sizes)
            return
        start = 0
        # Decoded in the reading thread alone: Arrow's thread pool, woken for every column of every batch, cost
        # 4x the CPU of decoding here (1 M rows in 65,536-row groups, 16,384-row batches: 1.7 -> 0.3 CPU-s), and
        # the run's scoring threads keep both cores busy already.
        batches = self._file.iter_batches(
            batch_size=self._chunk_rows, row_groups=self._groups, columns=self._columns, use_threads=False
        )
        for batch in _rechunk(batches, self._chunk_rows):
            start += batch.num_rows
            yield Chunk(
                start - batch.num_rows, batch if self._names is None else batch.rename_columns(self._names), start
            )

    def _parts(self, sizes: list[int]) -> Iterator[Chunk]:
        start = held = 0
        groups: list[int] = []
        for group, size in zip(self._groups, sizes, strict=True):
            if groups and held + size > self._chunk_rows:
                yield self._part(start, groups, held)
                start, groups, held = start + held, [], 0
            groups.append(group)
            held += size
        if groups:
            yield self._part(start, groups, held)

    def _part(self, start: int, groups: list[int], rows: int) -> Chunk:
        table = self._file.read_row_groups(groups, columns=self._columns)
        return Chunk(start, table if self._names is None else table.rename_columns(self._names), start + rows)


class CsvReader:
    """A CSV file streamed in blocks; every lead column is read as text (the core types it as the API does)."""

    unit = "bytes"

    def __init__(
        self, path: str, chunk_rows: int, renames: Mapping[str, str] | None = None, encoding: str = UTF8
    ) -> None:
        self._chunk_rows = chunk_rows
        self._path = path
        fs, inner = filesystem(path)
        try:
            self.total: int | None = fs.get_file_info(inner).size
            self._stream = fs.open_input_file(inner)
            header, data_start = _csv_header(path, self._stream, encoding)
            self.plan = plan_columns(path, header, renames)
            # Every column named by the plan: the read ones as their lead fields, the others apart (a header may
            # repeat a name it does not read). Arrow reads from the first data row on.
            names = [self.plan.reads.get(name, f"\0ignored {i}") for i, name in enumerate(header)]
            self._stream.seek(data_start)
            # A header and no rows: nothing to read (Arrow calls a file with no data line empty).
            self._reader: pacsv.CSVStreamingReader | None = None
            if self.total is not None and data_start >= self.total:
                return
            self._reader = pacsv.open_csv(
                self._stream,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, column_names=names, encoding=encoding),
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
            raise BatchInputError(_csv_failure(path, exc)) from exc

    def chunks(self) -> Iterator[Chunk]:
        """The rows in chunks, with the bytes read so far."""
        start = 0
        if self._reader is None:
            return
        try:
            for batch in _rechunk(iter(self._reader), self._chunk_rows):
                start += batch.num_rows
                yield Chunk(start - batch.num_rows, batch, self._stream.tell())
        except pa.ArrowInvalid as exc:  # a bad byte further on: after the rows before it
            raise BatchInputError(_csv_failure(self._path, exc, after_rows=start)) from exc


def _csv_failure(path: str, exc: Exception, after_rows: int = 0) -> str:
    """Why a CSV file cannot be read, with what to do when it is not UTF-8."""
    where = f" after data row {after_rows:,}" if after_rows else ""
    return f"cannot read {path} as CSV{where}: {exc}{encoding_hint(exc)}"


def _header_end(data: bytes) -> int | None:
    """Where a CSV's first record ends: its first line break outside quotes (None: not in `data` yet).

    A line break is outside quotes when an even number of quotes comes before it (an escaped quote, `""`, counts
    twice). Searched as bytes: in UTF-8 no byte of a multi-byte character is a quote or a line break.
    """
    start = 0
    while True:
        breaks = [i for i in (data.find(b"\n", start), data.find(b"\r", start)) if i >= 0]
        if not breaks:
            return None
        end = min(breaks)
        if data.count(b'"', 0, end) % 2 == 0:
            return end
        start = end + 1


def _csv_header(path: str, stream: pa.NativeFile, encoding: str = UTF8) -> tuple[list[str], int]:
    """A CSV file's column names (a UTF-8 byte order mark, as spreadsheets write, dropped) and where its data starts.

    Read here, not by Arrow, so that the run can name the columns itself (`--column`) and say which it ignores;
    Arrow's `skip_rows` counts line breaks, even quoted ones.
    """
    data = b""
    while (end := _header_end(data)) is None:
        block = stream.read(64 << 10)
        if not block:
            end = len(data)
            break
        data += block
        if len(data) > _CSV_HEADER_MAX_BYTES:
            raise BatchInputError(f"cannot read {path} as CSV: no header line in its first {len(data):,} bytes")
    first = next(csv.reader([data[:end].decode("utf-8-sig" if encoding == UTF8 else encoding, errors="replace")]), [])
    if not first:
        raise BatchInputError(f"cannot read {path} as CSV: it has no header line")
    skip = 2 if data[end : end + 2] == b"\r\n" else 1 if end < len(data) else 0
    return [name.strip() for name in first], end + skip


def open_reader(
    path: str,
    fmt: FileFormat,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    renames: Mapping[str, str] | None = None,
    encoding: str | None = None,
) -> Reader:
    """A reader of `path` in chunks of `chunk_rows`; `renames`: input columns read as lead fields (`--column`).

    `encoding`: a CSV file's character encoding (default UTF-8); Parquet's text is UTF-8 by its format.
    """
    codec = input_encoding(encoding, csv_input=fmt is FileFormat.CSV)
    if fmt is FileFormat.PARQUET:
        return ParquetReader(path, chunk_rows, renames)
    return CsvReader(path, chunk_rows, renames, codec)


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
    """A file written as `<path>.partial` (or at `partial`) and moved to `path` once finished (a rename locally).

    A run that fails or is interrupted never leaves a truncated file under the output's name: it deletes the
    partial file, and one killed outright (SIGKILL, power loss) leaves it under the partial name.
    """

    def __init__(self, path: str, partial: str | None = None) -> None:
        self._fs, self._inner = filesystem(path)
        _make_parent(self._fs, self._inner)
        self._partial = self._inner + PARTIAL_SUFFIX if partial is None else inner_path(partial)
        _make_parent(self._fs, self._partial)

    def _finish(self) -> None:
        self._fs.move(self._partial, self._inner)

    def _discard(self) -> None:
        with suppress(OSError):
            self._fs.delete_file(self._partial)


class ParquetWriter(_Staged):
    """A Parquet output file, one row group per chunk written; `dictionary`: the columns to dictionary-encode.

    `partial`: where it is written until closed (same filesystem), for writers that must not share a name.
    """

    def __init__(
        self, path: str, schema: pa.Schema, dictionary: list[str] | None = None, partial: str | None = None
    ) -> None:
        super().__init__(path, partial)
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
