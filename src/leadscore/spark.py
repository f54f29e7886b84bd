"""Score with Spark: a DataFrame with `score_table` on the executors' Python workers, or a Parquet dataset whole.

Two ways in:
- `score_dataframe(df)`: any DataFrame, its rows handed to Python as Arrow batches (`mapInArrow`), the scores
  back to the JVM as a DataFrame.
- `score_parquet(spark, input, output)`: a Parquet dataset rescored file to file. Spark only schedules: each task
  is a run of row groups of one file, which its Python worker reads with pyarrow, scores with `score_table` and
  writes as one Parquet part. The rows never pass through the JVM, whose reading, Arrow conversion and writing
  cost more CPU a row than the scoring itself (`bench/spark.py` measures both ways in one run).

pyspark is not a dependency of the package: it is imported only inside the functions that need it, so the service
and the command line never load it. The scoring function runs on the executors; the model bundle is loaded there
once per Python worker (Spark reuses its workers between tasks) from a path the workers can read:
- None: the bundle packaged with leadscore;
- a local directory (local mode, or a path present on every node);
- a directory shipped with `SparkContext.addFile(path, recursive=True)`: given by its driver-side path or its name,
  it is found with `SparkFiles.get(name)` where the driver's path does not exist;
- an `s3://` URI: downloaded once per worker to a temporary directory (pyarrow's S3 filesystem, credentials from
  the environment or the instance role, as on Glue and EMR; `AWS_ENDPOINT_URL` for an S3-compatible store).
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from leadscore.columns import CUSTOM_STRUCT, LEAD_COLUMNS, Renaming, plan_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from leadscore.columnar import ModelBundle

# The columns `score_table` reads; a DataFrame's other columns are left out before its rows cross to Python.
INPUT_COLUMNS: Final = (*LEAD_COLUMNS, CUSTOM_STRUCT)
# Rows per Arrow batch Spark hands the scoring function: `spark.sql.execution.arrow.maxRecordsPerBatch`, which the
# rescoring job sets (Spark's default is 10,000). A batch has a fixed cost on both sides; measured with bench/spark.py
# (local[2], 400,000 leads, alternating runs): 0.361-0.388 of the predictor per core at 10,000, 0.353-0.432 (mean
# 0.40) at 50,000. Below the core's CHUNK_ROWS (65,536), a batch is scored on its worker's own thread.
ARROW_BATCH_CONF: Final = "spark.sql.execution.arrow.maxRecordsPerBatch"
ARROW_BATCH_ROWS: Final = 50_000
# Spark's `monotonically_increasing_id` layout: the partition id above the row's offset in its partition.
_PARTITION_SHIFT: Final = 33

# How a DataFrame's columns are renamed, in the advice of a refusal: one chained call per column.
_SPARK_RENAMING: Final = Renaming(".withColumnRenamed({name!r}, {field!r})", "")

BatchScorer = Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def _download(uri: str) -> Path:
    """Copy the bundle directory at `uri` (s3://...) to a new local temporary directory.

    S3 is reached as `leadscore score` reaches it (`leadscore.batch.io.filesystem`): credentials and region from
    the AWS SDK's usual chain, `AWS_ENDPOINT_URL` for an S3-compatible store.
    """
    from leadscore.batch.io import filesystem  # noqa: PLC0415 - only a worker given an s3:// bundle needs it

    source, path = filesystem(uri)
    target = Path(tempfile.mkdtemp(prefix="leadscore-bundle-"))
    pafs.copy_files(
        path.rstrip("/"), str(target), source_filesystem=source, destination_filesystem=pafs.LocalFileSystem()
    )
    return target


def local_bundle_dir(location: str) -> Path:
    """The local directory of the bundle named by `location` on this worker (see the module docstring)."""
    from leadscore.batch.io import is_s3  # noqa: PLC0415 - see _download

    if is_s3(location):
        return _download(location)
    path = Path(location)
    if path.is_dir():
        return path
    from pyspark import SparkFiles  # noqa: PLC0415 - pyspark is optional; only an executor gets here

    shipped = Path(SparkFiles.get(path.name))
    if not shipped.is_dir():
        raise FileNotFoundError(f"no model bundle at {location} on this worker, nor shipped as {path.name}")
    return shipped


# One bundle per Python worker and location: loading (and warming up) the predictor costs far more than a batch,
# and Spark runs many tasks in the same worker, so the loaded bundle stays for the worker's lifetime.
@functools.cache
def worker_bundle(location: str) -> ModelBundle:
    """The bundle at `location`, loaded once in this process."""
    from leadscore.columnar import resolve_bundle  # noqa: PLC0415 - the model loads on the worker only

    return resolve_bundle(local_bundle_dir(location))


# PySpark's worker calls `importlib.invalidate_caches()` before every task, which re-reads the directory of every zip
# archive on the worker's path. Spark puts its own spark-core jar there (for a pyspark packaged inside it), and
# re-reading its ~5,000 entries was most of a task's fixed cost (measured here, empty tasks on warm workers:
# 101-113 ms of the worker's CPU and 35-42 ms of the JVM's a task, 64-67 ms and 14 ms with the jar off the path).
# A jar holding no Python file can satisfy no import: leaving it off the path changes nothing a worker imports.
@functools.cache
def lighten_worker_path() -> tuple[str, ...]:
    """Take off this process's `sys.path` the jar archives that hold no Python file (once a process); those taken."""
    import sys  # noqa: PLC0415 - runs on the executor
    import zipfile  # noqa: PLC0415

    dropped: list[str] = []
    for entry in dict.fromkeys(sys.path):
        if not entry.lower().endswith(".jar"):
            continue
        try:
            with zipfile.ZipFile(entry) as archive:
                if any(name.endswith((".py", ".pyc")) for name in archive.namelist()):
                    continue
        except (OSError, zipfile.BadZipFile):
            continue  # not readable as an archive: left as it is
        sys.path[:] = [item for item in sys.path if item != entry]
        sys.path_importer_cache.pop(entry, None)
        dropped.append(entry)
    return tuple(dropped)


def arrow_scorer(bundle: str | None = None, *, as_of: datetime | None = None, explain: bool = False) -> BatchScorer:
    """A function for `DataFrame.mapInArrow`: Arrow batches of leads in, batches of `output_schema(explain)` out.

    `row` is the row's position in its input partition with the partition's index above it (bits 33 and up), as
    Spark's `monotonically_increasing_id` numbers rows: unique in the DataFrame, 0-based in a single partition.
    """
    from leadscore.columnar import score_table  # noqa: PLC0415 - keeps `import leadscore.spark` light

    def score_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext  # noqa: PLC0415 - runs on the executor

        lighten_worker_path()
        context = TaskContext.get()
        offset = 0 if context is None else context.partitionId() << _PARTITION_SHIFT
        for batch in batches:
            # Loaded at the first batch: a worker that only sees empty partitions never loads the model.
            model = None if bundle is None else worker_bundle(bundle)
            scored = score_table(batch, bundle=model, as_of=as_of, explain=explain)
            scored = _rows_from(scored, offset)
            offset += batch.num_rows
            yield from scored.to_batches()

    return score_batches


def _rows_from(scored: pa.Table, first: int) -> pa.Table:
    """`scored` with its `row` column (the core's first, 0-based) counted from `first`."""
    return scored.set_column(0, scored.schema.field(0), pc.add(scored.column(0), first))


def spark_schema(explain: bool = False) -> StructType:
    """The Spark schema of the scores (`leadscore.columnar.output_schema`)."""
    from pyspark.sql.pandas.types import from_arrow_schema  # noqa: PLC0415 - pyspark is optional

    from leadscore.columnar import output_schema  # noqa: PLC0415

    return from_arrow_schema(output_schema(explain))


def score_dataframe(
    df: DataFrame,
    bundle: str | Path | None = None,
    as_of: datetime | None = None,
    explain: bool = False,
    columns: Mapping[str, str] | None = None,
) -> DataFrame:
    """Score every row of `df` (columns named as the API's lead fields); one output row per input row.

    `as_of` defaults to now, taken once here so that every row of the job is measured from the same time.
    Rejected rows are kept, with a null score and their `error_field` / `error_message`. The session's Arrow batch
    size applies (`ARROW_BATCH_CONF`; the rescoring job sets `ARROW_BATCH_ROWS`). `columns` reads columns named
    otherwise as lead fields ({"Company Size": "company_size"}), as `leadscore score --column` does; a DataFrame
    with no lead field among its columns, or a mapping naming a column it lacks, is refused (ColumnError), and
    workers whose Python cannot import leadscore raise ModuleNotFoundError here (`check_workers`).
    """
    when = as_of or datetime.now(UTC)
    plan = plan_columns("the DataFrame", df.columns, columns, renaming=_SPARK_RENAMING)
    check_workers(df.sparkSession)  # once per application: a clear error now, not a bare one at the first action
    renamed = {name: field for name, field in plan.reads.items() if name != field}
    # Renamed by name as it is (a `.` in a CRM's column name is no struct access), then the fields selected.
    leads = (df.withColumnsRenamed(renamed) if renamed else df).select(*plan.reads.values())
    return leads.mapInArrow(arrow_scorer(_location(bundle), as_of=when, explain=explain), spark_schema(explain))


def _location(bundle: str | Path | None) -> str | None:
    """The bundle's location as the workers will resolve it: an absolute local path, a URI, or None."""
    if bundle is None:
        return None
    text = str(bundle)
    if "://" in text:
        return text
    path = Path(text)
    return str(path.resolve()) if path.exists() else text


# `score_parquet`: the most rows a task is given (consecutive row groups, of one file or of several small ones; a
# larger row group alone). A task has a fixed cost besides its rows (an empty task on a warm worker: ~65 ms of the
# worker's CPU and ~14 ms of the JVM's once `lighten_worker_path` has run, about twice that before it; 10.6% of the
# workers' py-spy samples when each 50,000-row file was a task). So small files share a task, and a dataset is cut
# into no more tasks than TASKS_PER_CORE a core keep every core busy to the end.
PART_ROWS: Final = 500_000
TASKS_PER_CORE: Final = 2
# Rows a task reads and scores at a time: below the core's CHUNK_ROWS, so a chunk is scored on the task's thread.
PART_CHUNK_ROWS: Final = 50_000
# Files and folders whose names start so are not data (Spark's `_SUCCESS`, `.crc` files, `_temporary`).
_HIDDEN: Final = ("_", ".")
_TEMPORARY: Final = "_temporary"
_SUCCESS: Final = "_SUCCESS"
SaveMode = Literal["errorifexists", "overwrite"]


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive row groups of one input file."""

    path: str  # the file, as `leadscore.batch.io.filesystem` reads it (a local path or s3://bucket/key)
    row_groups: tuple[int, ...]
    rows: int


@dataclass(frozen=True, slots=True)
class Part:
    """What one task scores, in order: row groups of one or more input files; its index names its output part."""

    index: int
    segments: tuple[Segment, ...]

    @property
    def rows(self) -> int:
        """Rows in the part."""
        return sum(s.rows for s in self.segments)


@dataclass(frozen=True, slots=True)
class PartScored:
    """What a task wrote: its part file (the output's own name), rows in it, and how many were rejected."""

    index: int
    file: str
    rows: int
    rejected: int


@dataclass(frozen=True, slots=True)
class Rescored:
    """What `score_parquet` did: the parts written, leads scored and rejected, seconds from start to `_SUCCESS`."""

    output: str
    parts: int
    rows: int
    scored: int
    rejected: int
    seconds: float
    # What the input's columns mean for the scores (`leadscore.columns.ColumnPlan.notes`): fields no file has,
    # columns left unread, the renames that would read them.
    column_notes: tuple[str, ...] = ()


def _uri(path: str, inner: str) -> str:
    """`inner` (a path within the filesystem of `path`) written the way `path` is: s3://..., s3a://... or local."""
    from leadscore.batch.io import is_s3  # noqa: PLC0415 - see input_files

    return f"{path.split('://', 1)[0]}://{inner}" if is_s3(path) else inner


def _is_data(relative: str) -> bool:
    return not any(name.startswith(_HIDDEN) for name in relative.split("/"))


def input_files(path: str) -> list[str]:
    """The data files of a Parquet dataset (a file, or every file below a folder but hidden ones), in name order."""
    from leadscore.batch.io import BatchInputError, filesystem  # noqa: PLC0415 - keeps `import leadscore.spark` light

    fs, inner = filesystem(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.File:
        return [path]
    if info.type == pafs.FileType.NotFound:
        raise BatchInputError(f"no Parquet dataset at {path}: it does not exist")
    root = inner.rstrip("/")
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    files = sorted(f.path for f in found if f.type == pafs.FileType.File and _is_data(f.path[len(root) :].lstrip("/")))
    if not files:
        raise BatchInputError(f"no Parquet dataset at {path}: the folder holds no data file")
    return [_uri(path, f) for f in files]


def read_footers(files: Sequence[str], threads: int = 16) -> list[pq.FileMetaData]:
    """The Parquet footers of `files`, read `threads` at a time (one request each on S3)."""
    from leadscore.batch.io import BatchInputError, filesystem, inner_path  # noqa: PLC0415 - see input_files

    if not files:
        return []
    fs = filesystem(files[0])[0]  # one client: the dataset's files are in one store

    def footer(file: str) -> pq.FileMetaData:
        try:
            with fs.open_input_file(inner_path(file)) as source:
                return pq.read_metadata(source)
        except (OSError, pa.ArrowInvalid) as exc:
            raise BatchInputError(f"cannot read {file} as Parquet: {exc}") from exc

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(files)))) as pool:
        return list(pool.map(footer, files))


def column_notes(
    files: Sequence[str], footers: Sequence[pq.FileMetaData], columns: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """What the files' columns mean for the scores, each line once: fields they lack, columns left unread.

    Raises ColumnError for a file with no lead field among its columns, or a `columns` mapping naming a column a
    file lacks, with the renames to make.
    """
    notes: dict[str, None] = {}
    for file, metadata in zip(files, footers, strict=True):
        plan = plan_columns(file, metadata.schema.to_arrow_schema().names, columns, renaming=_SPARK_RENAMING)
        notes.update(dict.fromkeys(plan.notes()))
    return tuple(notes)


def plan_parts(
    files: Sequence[str], footers: Sequence[pq.FileMetaData], part_rows: int = PART_ROWS, cores: int = 1
) -> list[Part]:
    """The tasks that score `files` (`input_files`, with their `read_footers`) on `cores` cores.

    A part holds consecutive row groups, across files in their order, up to `part_rows` rows and no more than
    the dataset's rows shared by TASKS_PER_CORE tasks a core (a larger row group is a part alone).
    """
    total = sum(metadata.num_rows for metadata in footers)
    most = max(1, min(part_rows, math.ceil(total / (TASKS_PER_CORE * max(1, cores)))))
    parts: list[Part] = []
    segments: list[Segment] = []
    held = 0

    def close_part() -> None:
        nonlocal segments, held
        if segments:
            parts.append(Part(len(parts), tuple(segments)))
        segments, held = [], 0

    for file, metadata in zip(files, footers, strict=True):
        groups: list[int] = []
        rows = 0
        for group in range(metadata.num_row_groups):
            size = metadata.row_group(group).num_rows
            if size and held + rows + size > most and held + rows:
                if groups:
                    segments.append(Segment(file, tuple(groups), rows))
                close_part()
                groups, rows = [], 0
            if size:
                groups.append(group)
                rows += size
        if groups:
            segments.append(Segment(file, tuple(groups), rows))
            held += rows
    close_part()
    return parts


@dataclass(frozen=True, slots=True)
class _Job:
    """What every task of a `score_parquet` job is told; called on each task's partition (one part)."""

    output: str
    id: str
    bundle: str | None
    as_of: datetime
    explain: bool
    columns: Mapping[str, str]

    def __call__(self, _index: int, parts: Iterable[Part]) -> Iterator[PartScored]:
        lighten_worker_path()
        for part in parts:
            yield _write_part(part, self)


def _write_part(part: Part, job: _Job) -> PartScored:
    """Score one part and write it: staged under `_temporary/<job>/`, then moved to its name in the output.

    A task that fails leaves only its staged file (the job removes `_temporary`); a retried or speculative
    attempt stages its own file and moves the same rows to the same name.
    """
    from leadscore.batch.io import ParquetReader, ParquetWriter  # noqa: PLC0415 - runs on the executor
    from leadscore.columnar import dictionary_columns, output_schema, score_table  # noqa: PLC0415

    model = None if job.bundle is None else worker_bundle(job.bundle)
    root = job.output.rstrip("/")
    name = f"part-{part.index:05d}-{job.id}.zstd.parquet"
    final = f"{root}/{name}"
    schema = output_schema(job.explain)
    # Staged under a name of this attempt's own: a speculative twin writes its own file, then the same rows.
    staged = f"{root}/{_TEMPORARY}/{job.id}/{uuid.uuid4().hex}"
    writer = ParquetWriter(final, schema, dictionary_columns(schema), staged)
    first_row = part.index << _PARTITION_SHIFT
    rows = rejected = 0
    try:
        for segment in part.segments:
            reader = ParquetReader(segment.path, PART_CHUNK_ROWS, job.columns, row_groups=segment.row_groups)
            for chunk in reader.chunks():
                scored = score_table(chunk.rows, bundle=model, as_of=job.as_of, explain=job.explain)
                writer.write(_rows_from(scored, first_row + rows))
                rows += scored.num_rows
                rejected += scored.column("score").null_count
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return PartScored(part.index, final, rows, rejected)


# Spark applications whose workers were found to import leadscore: checked once per application (its executors
# share one environment), not before every job of a long session.
WORKERS_CHECKED: Final[set[str]] = set()


def check_workers(spark: SparkSession) -> None:
    """Raise ModuleNotFoundError, saying what to do, where the session's Python workers cannot import leadscore.

    One one-row task (~0.1 CPU-s), run before a job whose every task would fail with a bare ModuleNotFoundError,
    once per Spark application. The probe is a nested function, which Spark's cloudpickle sends by value: it runs
    where leadscore cannot be imported.
    """
    application = spark.sparkContext.applicationId
    if application in WORKERS_CHECKED:
        return

    def probe(_: Iterable[int]) -> Iterator[tuple[bool, str]]:
        import importlib.util  # noqa: PLC0415 - on the worker
        import sys  # noqa: PLC0415

        yield importlib.util.find_spec("leadscore") is not None, sys.executable

    (found, executable), *_ = spark.sparkContext.parallelize([0], 1).mapPartitions(probe).collect()
    if not found:
        raise ModuleNotFoundError(
            f"Spark's Python workers ({executable}) cannot import leadscore: install it in their Python (Glue: "
            "--additional-python-modules with the leadscore wheel; EMR: a bootstrap action), or run them with a "
            "Python that has it (PYSPARK_PYTHON, or spark.pyspark.python; locally: sys.executable)",
            name="leadscore",
        )
    WORKERS_CHECKED.add(application)


def _clear(fs: pafs.FileSystem, path: str) -> None:
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def _prepare_output(output: str, mode: SaveMode, inputs: Sequence[str]) -> tuple[pafs.FileSystem, str]:
    """The output's filesystem and path, emptied for `overwrite`; an output with files is refused otherwise."""
    from leadscore.batch.io import BatchInputError, filesystem, inner_path  # noqa: PLC0415 - see input_files

    fs, root = filesystem(output)
    root = root.rstrip("/")
    for file in inputs:
        inner = inner_path(file)
        if inner == root or inner.startswith(f"{root}/"):
            raise BatchInputError(f"the output {output} holds the input {file}: write the scores somewhere else")
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise BatchInputError(f"the output {output} is a file: name a folder (or an S3 prefix)")
    held = info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(root, recursive=False))
    if held and mode == "errorifexists":
        raise BatchInputError(f"the output {output} already holds files: pass mode='overwrite' to replace them")
    if held:
        fs.delete_dir_contents(root)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(root, recursive=True)
    return fs, root


def score_parquet(
    spark: SparkSession,
    input: str,
    output: str,
    *,
    bundle: str | Path | None = None,
    as_of: datetime | None = None,
    explain: bool = False,
    columns: Mapping[str, str] | None = None,
    mode: SaveMode = "errorifexists",
    part_rows: int = PART_ROWS,
) -> Rescored:
    """Rescore the Parquet dataset at `input` into Parquet parts at `output` (local paths or s3://), one per task.

    The output is what `score_dataframe(...).write.parquet(output)` writes (`output_schema(explain)`, one row per
    input row, rejected rows with their error), with a `_SUCCESS` file once every part is in place; `row` is the
    row's position in its part with the part's index above it (bits 33 and up). S3 is reached with pyarrow, with
    the AWS SDK's usual credentials (the job's role on Glue and EMR; `AWS_ENDPOINT_URL` for an S3-compatible store).
    A job that fails removes the parts it wrote. `mode` is Spark's save mode: an output holding files is refused
    unless it is `overwrite`, which empties it first. A task scores consecutive row groups (small files share a
    task) up to `part_rows` rows, fewer where the dataset is small against the session's cores (`plan_parts`).
    Datasets partitioned into `key=value` folders are read as their files are: the folders' values are not
    columns (`score_dataframe` reads them as Spark does).
    """
    started = time.perf_counter()
    when = as_of or datetime.now(UTC)
    files = input_files(input)
    footers = read_footers(files)
    notes = column_notes(files, footers, columns)  # every file's columns checked before anything runs
    parts = plan_parts(files, footers, part_rows, spark.sparkContext.defaultParallelism)
    if parts:
        check_workers(spark)
    fs, root = _prepare_output(output, mode, files)
    job = _Job(output, uuid.uuid4().hex[:16], _location(bundle), when, explain, dict(columns or {}))
    try:
        written: list[PartScored] = (
            spark.sparkContext.parallelize(parts, max(1, len(parts))).mapPartitionsWithIndex(job).collect()
            if parts
            else []
        )
    except BaseException:
        for name in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
            if f"-{job.id}." in name.base_name:
                fs.delete_file(name.path)
        raise
    finally:
        _clear(fs, f"{root}/{_TEMPORARY}/{job.id}")
        if not fs.get_file_info(pafs.FileSelector(f"{root}/{_TEMPORARY}", allow_not_found=True)):
            _clear(fs, f"{root}/{_TEMPORARY}")  # another job's staging (a concurrent writer) is left alone
    if not written:  # no row in the whole dataset: one empty part, so the output has the scores' schema
        from leadscore.columnar import output_schema  # noqa: PLC0415

        empty = f"{root}/part-00000-{job.id}.zstd.parquet"
        pq.write_table(output_schema(explain).empty_table(), empty, filesystem=fs)
    with fs.open_output_stream(f"{root}/{_SUCCESS}"):
        pass
    rows = sum(p.rows for p in written)
    rejected = sum(p.rejected for p in written)
    return Rescored(output, len(written), rows, rows - rejected, rejected, time.perf_counter() - started, notes)
