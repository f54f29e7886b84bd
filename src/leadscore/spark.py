"""Score a Spark DataFrame with `score_table`, one Arrow batch at a time, on the executors' Python workers.

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
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from leadscore.columns import CUSTOM_STRUCT, LEAD_COLUMNS, Renaming, plan_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
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
    if location.startswith("s3://"):
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


def arrow_scorer(bundle: str | None = None, *, as_of: datetime | None = None, explain: bool = False) -> BatchScorer:
    """A function for `DataFrame.mapInArrow`: Arrow batches of leads in, batches of `output_schema(explain)` out.

    `row` is the row's position in its input partition with the partition's index above it (bits 33 and up), as
    Spark's `monotonically_increasing_id` numbers rows: unique in the DataFrame, 0-based in a single partition.
    """
    from leadscore.columnar import score_table  # noqa: PLC0415 - keeps `import leadscore.spark` light

    def score_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext  # noqa: PLC0415 - runs on the executor

        context = TaskContext.get()
        offset = 0 if context is None else context.partitionId() << _PARTITION_SHIFT
        for batch in batches:
            # Loaded at the first batch: a worker that only sees empty partitions never loads the model.
            model = None if bundle is None else worker_bundle(bundle)
            scored = score_table(batch, bundle=model, as_of=as_of, explain=explain)
            scored = scored.set_column(0, scored.schema.field(0), pc.add(scored.column(0), offset))
            offset += batch.num_rows
            yield from scored.to_batches()

    return score_batches


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
    with no lead field among its columns, or a mapping naming a column it lacks, is refused (ColumnError).
    """
    when = as_of or datetime.now(UTC)
    plan = plan_columns("the DataFrame", df.columns, columns, renaming=_SPARK_RENAMING)
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
