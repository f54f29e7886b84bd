"""Scoring with Spark (leadscore.spark) with real pyspark in local mode, Parquet in and out.

One SparkSession serves the module (the JVM takes ~10 s to start). Spark's own `s3a://` filesystem cannot run
here (the hadoop-aws jars cannot be fetched): S3 is covered by the bundle download and by `score_parquet`, whose
tasks read and write S3 with pyarrow, run by the Glue script in a Spark of its own on a real S3 server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from leadscore.batch.io import BatchInputError
from leadscore.columnar import output_schema, score_table
from leadscore.columns import ColumnError
from leadscore.model.bundle import MANIFEST_FILE, Manifest, default_bundle_dir
from leadscore.spark import (
    ARROW_BATCH_CONF,
    ARROW_BATCH_ROWS,
    TASKS_PER_CORE,
    WORKERS_CHECKED,
    check_workers,
    input_files,
    lighten_worker_path,
    local_bundle_dir,
    plan_parts,
    read_footers,
    score_dataframe,
    score_parquet,
    spark_schema,
)
from leadscore.training.synth import synthesize
from tests.lake.conftest import REGION, make_bucket
from tests.support.rgw import RgwServer
from tests.support.spark import local_spark

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
ROWS = 3000
# Rows the API would reject, by index: a value out of bounds and a negative count.
INVALID = {7: ("email_engagement_score", 1.5), 1500: ("website_sessions", -3)}
# What `score_table` computes per row that Spark must not change (`row` is renumbered, `scored_at` is a clock).
COMPARED = ("lead_id", "score", "confidence", "model_version", "error_field", "error_message")


@pytest.fixture(scope="module")
def spark() -> SparkSession:
    """The test session's local[2] Spark."""
    return local_spark()


def leads_table(rows: int = ROWS) -> pa.Table:
    """Synthetic CRM rows with lead ids, an extra column (`outcome`) and a few invalid values."""
    table = synthesize(rows, seed=21)
    table = table.add_column(0, "lead_id", pa.array([f"crm-{i}" for i in range(rows)]))
    for index, (name, value) in INVALID.items():
        if index >= rows:
            continue
        column = table.column(name).to_pylist()
        column[index] = value
        position = table.schema.get_field_index(name)
        table = table.set_column(position, name, pa.array(column, table.schema.field(name).type))
    return table


@pytest.fixture(scope="module")
def leads_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Parquet dataset of the leads in three files."""
    out = tmp_path_factory.mktemp("leads")
    table = leads_table()
    for part, start in enumerate(range(0, ROWS, 1000)):
        pq.write_table(table.slice(start, 1000), out / f"part-{part}.parquet")
    return out


@pytest.fixture(scope="module")
def expected(leads_dir: Path, tiny_bundle: Path) -> pa.Table:
    """`score_table` on the same rows, in process, sorted by lead id."""
    table = ds.dataset(leads_dir).to_table()
    return score_table(table, bundle=tiny_bundle, as_of=AS_OF).sort_by("lead_id")


@pytest.fixture(scope="module")
def scored(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> pa.Table:
    """The dataset read, scored and written back by Spark, then read with pyarrow and sorted by lead id."""
    out = tmp_path_factory.mktemp("scores") / "scores"
    score_dataframe(spark.read.parquet(str(leads_dir)), bundle=tiny_bundle, as_of=AS_OF).write.parquet(str(out))
    return ds.dataset(out).to_table().sort_by("lead_id")


def test_spark_scores_equal_score_table_on_the_same_rows(scored: pa.Table, expected: pa.Table) -> None:
    """Every lead gets from Spark exactly the score, confidence, version and error that score_table gives it."""
    assert scored.num_rows == ROWS
    for name in COMPARED:
        assert scored.column(name).to_pylist() == expected.column(name).to_pylist(), name


def test_rejected_rows_carry_their_error(scored: pa.Table) -> None:
    """Rows that fail validation are kept with a null score, naming the field that failed."""
    rejected = scored.filter(pc.is_valid(scored.column("error_field")))
    assert sorted(rejected.column("lead_id").to_pylist()) == sorted(f"crm-{i}" for i in INVALID)
    assert set(rejected.column("error_field").to_pylist()) == {name for name, _ in INVALID.values()}
    assert rejected.column("score").null_count == rejected.num_rows
    assert all(rejected.column("error_message").to_pylist())


def test_output_has_the_columnar_schema(scored: pa.Table) -> None:
    """The written scores have output_schema's columns and types, `scored_at` in UTC."""
    schema = output_schema(explain=False)
    assert scored.schema.names == schema.names
    for field in schema:
        assert scored.schema.field(field.name).type == field.type, field.name


def test_rows_are_numbered_uniquely(scored: pa.Table) -> None:
    """`row` is unique across the DataFrame's partitions."""
    rows = scored.column("row")
    assert pc.count_distinct(rows).as_py() == scored.num_rows


def test_explain_adds_the_explain_columns(spark: SparkSession, leads_dir: Path, tiny_bundle: Path) -> None:
    """With explain, every scored row carries the explain columns, equal to score_table's."""
    df = spark.read.parquet(str(leads_dir)).limit(200)
    rows = pa.Table.from_pylist([r.asDict() for r in df.collect()])
    out = score_dataframe(df.coalesce(1), bundle=tiny_bundle, as_of=AS_OF, explain=True)
    assert out.schema == spark_schema(explain=True)
    got = pa.Table.from_pylist([r.asDict() for r in out.collect()]).sort_by("lead_id")
    want = score_table(rows, bundle=tiny_bundle, as_of=AS_OF, explain=True).sort_by("lead_id")
    assert got.column("explained").to_pylist() == want.column("explained").to_pylist()
    assert all(got.column("explained").to_pylist())
    for name in ("reason_raising_fields", "reason_lowering_fields", "driver_fit"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_bundle_shipped_with_add_file_is_found_on_the_workers(
    spark: SparkSession, tiny_bundle: Path, tmp_path: Path
) -> None:
    """A bundle shipped with addFile is loaded by its name where the driver's path does not exist on the worker."""
    shipped = tmp_path / "shipped-bundle"
    shipped.mkdir()
    for item in tiny_bundle.iterdir():
        (shipped / item.name).write_bytes(item.read_bytes())
    spark.sparkContext.addFile(str(shipped), recursive=True)
    df = spark.createDataFrame([{"lead_id": "a", "company_size": "Enterprise"}])
    (row,) = score_dataframe(df, bundle="/nowhere/shipped-bundle", as_of=AS_OF).collect()
    assert row.model_version == "test-tiny"
    assert row.score is not None


def test_default_bundle_is_used_without_a_bundle(spark: SparkSession) -> None:
    """With no bundle the packaged one scores (its version is the default bundle's)."""
    df = spark.createDataFrame([{"lead_id": "a", "seniority_level": "Executive"}])
    (row,) = score_dataframe(df, as_of=AS_OF).collect()
    manifest = Manifest.from_json((default_bundle_dir() / MANIFEST_FILE).read_text())
    assert row.model_version == manifest.version
    assert row.score is not None


def test_a_dataframe_with_no_lead_field_is_refused_with_the_renames_to_make(spark: SparkSession) -> None:
    """Columns named as a CRM names them are not scored on nothing: ColumnError names the renames to make."""
    df = spark.createDataFrame([{"Record ID": "a", "Job Title": "VP Sales"}])
    with pytest.raises(ColumnError) as refused:
        score_dataframe(df, as_of=AS_OF)
    assert "Read yours as fields: .withColumnRenamed('Job Title', 'job_title')" in refused.value.message
    renamed = df.withColumnRenamed("Record ID", "lead_id").withColumnRenamed("Job Title", "job_title")
    (row,) = score_dataframe(renamed, as_of=AS_OF).collect()
    assert row.lead_id == "a"
    assert row.score is not None


def test_bundle_on_s3_is_downloaded_to_a_local_directory(
    tiny_bundle: Path, rgw: RgwServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An s3:// bundle is copied to a local directory with all its files (a real S3 server)."""
    # Ceph RGW refuses the SDK's default aws-chunked uploads (see the lake's S3 settings).
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rgw.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rgw.secret_key)
    endpoint = rgw.endpoint.removeprefix("http://")
    s3 = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True)
    # A bucket of its own: the RGW server is the whole run's.
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_dir(bucket)
    pafs.copy_files(
        str(tiny_bundle), f"{bucket}/v1", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", rgw.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    local = local_bundle_dir(f"s3://{bucket}/v1/")
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in tiny_bundle.iterdir())
    assert (local / "model.ubj").read_bytes() == (tiny_bundle / "model.ubj").read_bytes()


def glue_job() -> ModuleType:
    """deploy/glue/rescore_job.py as a module."""
    spec = importlib.util.spec_from_file_location("rescore_job", ROOT / "deploy" / "glue" / "rescore_job.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_glue_job_scores_a_dataset_end_to_end(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """The Glue script reads --input, scores with --model-uri, writes --output and counts scored and rejected."""
    out = tmp_path / "job-out"
    argv = ["--JOB_NAME", "rescore", "--input", str(leads_dir), "--output", str(out), "--model-uri", str(tiny_bundle)]
    scored, rejected = glue_job().run(spark, [*argv, "--as-of", "2026-06-01T00:00:00"])
    assert (scored, rejected) == (ROWS - len(INVALID), len(INVALID))
    assert pq.read_table(out).num_rows == ROWS


def test_glue_job_reads_with_spark_when_asked_to_and_writes_the_same_scores(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """--reader spark (Spark reads, mapInArrow scores, Spark writes) gives what the default pyarrow reader gives."""
    common = ["--input", str(leads_dir), "--model-uri", str(tiny_bundle), "--as-of", "2026-06-01T00:00:00"]
    counts = {
        reader: glue_job().run(spark, [*common, "--output", str(tmp_path / reader), "--reader", reader])
        for reader in ("pyarrow", "spark")
    }
    assert counts["pyarrow"] == counts["spark"] == (ROWS - len(INVALID), len(INVALID))
    by_pyarrow, by_spark = (ds.dataset(tmp_path / r).to_table().sort_by("lead_id") for r in ("pyarrow", "spark"))
    for name in COMPARED:
        assert by_pyarrow.column(name).equals(by_spark.column(name)), name


def test_glue_job_hands_the_scorer_large_arrow_batches(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """The job sets the session's Arrow batch size to ARROW_BATCH_ROWS, not Spark's default of 10,000."""
    spark.conf.unset(ARROW_BATCH_CONF)
    assert spark.conf.get(ARROW_BATCH_CONF) == "10000"
    argv = ["--input", str(leads_dir), "--output", str(tmp_path / "out"), "--model-uri", str(tiny_bundle)]
    argv += ["--reader", "spark"]
    glue_job().run(spark, argv)
    assert spark.conf.get(ARROW_BATCH_CONF) == str(ARROW_BATCH_ROWS)


def test_glue_job_reads_a_crm_export_with_its_column_map(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """--columns (JSON) reads columns named as a CRM names them (a dot included) as lead fields; scores unchanged."""
    table = pq.read_table(leads_dir)
    crm_names = {"lead_id": "Record.ID", "industry": "Industry", "job_title": "Job Title"}
    pq.write_table(table.rename_columns([crm_names.get(n, n) for n in table.column_names]), tmp_path / "crm.parquet")
    common = ["--model-uri", str(tiny_bundle), "--as-of", "2026-06-01T00:00:00"]
    glue_job().run(spark, ["--input", str(leads_dir), "--output", str(tmp_path / "a"), *common])
    columns = json.dumps({crm: field for field, crm in crm_names.items()})
    argv = ["--input", str(tmp_path / "crm.parquet"), "--output", str(tmp_path / "b"), "--columns", columns]
    glue_job().run(spark, [*argv, *common])
    original, mapped = (pq.read_table(tmp_path / d).sort_by("lead_id") for d in ("a", "b"))
    assert mapped["lead_id"].to_pylist() == original["lead_id"].to_pylist()
    assert mapped["score"].equals(original["score"])
    assert mapped["confidence"].equals(original["confidence"])


def test_a_column_map_naming_a_column_the_dataframe_lacks_is_refused(spark: SparkSession) -> None:
    """A mapping is checked, not dropped silently as withColumnRenamed would drop it."""
    df = spark.createDataFrame([{"lead_id": "a", "industry": "Retail"}])
    with pytest.raises(ColumnError, match="has no column 'Job Title'"):
        score_dataframe(df, as_of=AS_OF, columns={"Job Title": "job_title"})


def test_importing_leadscore_spark_loads_no_pyspark() -> None:
    """Pyspark is optional: `import leadscore.spark` does not import it (the service never needs it)."""
    code = "import sys, leadscore.spark; sys.exit('pyspark' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def test_jars_without_python_leave_the_path_and_jars_with_python_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A jar holding no Python file is taken off `sys.path` (and its importer forgotten); one holding a module stays."""
    bare, packaged = tmp_path / "classes.jar", tmp_path / "python-inside.jar"
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("org/example/Main.class", b"\xca\xfe\xba\xbe")
    module = f"inside_{uuid.uuid4().hex[:8]}"
    with zipfile.ZipFile(packaged, "w") as archive:
        archive.writestr(f"{module}.py", "VALUE = 42\n")
    monkeypatch.setattr(sys, "path", [str(bare), str(packaged), *sys.path])
    monkeypatch.setattr(sys, "path_importer_cache", dict(sys.path_importer_cache))
    importlib.import_module("json.decoder")  # a lookup along the path: the jars get importers
    dropped = lighten_worker_path.__wrapped__()
    assert dropped == (str(bare),)
    assert str(bare) not in sys.path
    assert str(bare) not in sys.path_importer_cache
    assert str(packaged) in sys.path
    assert importlib.import_module(module).VALUE == 42


def test_spark_workers_take_sparks_own_jar_off_their_path_and_still_import(spark: SparkSession) -> None:
    """On a real worker the spark-core jar (no Python in it) leaves the path, and imports still resolve after."""

    def probe(_: Iterable[int]) -> Iterator[tuple[tuple[str, ...], list[str], bool]]:
        import importlib  # noqa: PLC0415 - on the worker
        import sys  # noqa: PLC0415

        from leadscore.spark import lighten_worker_path  # noqa: PLC0415

        dropped = lighten_worker_path()
        importlib.invalidate_caches()  # what the worker does before every task
        yield dropped, list(sys.path), importlib.import_module("pyspark.sql.streaming") is not None

    for dropped, path, imported in spark.sparkContext.parallelize([0, 1], 2).mapPartitions(probe).collect():
        assert not [entry for entry in path if entry.endswith(".jar")], path
        assert all(Path(entry).name.startswith("spark-core") for entry in dropped), dropped
        assert imported


@pytest.fixture(scope="module")
def rescored(spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset rescored file to file by `score_parquet`: the output folder."""
    out = tmp_path_factory.mktemp("rescored") / "scores"
    score_parquet(spark, str(leads_dir), str(out), bundle=tiny_bundle, as_of=AS_OF)
    return out


def test_parquet_rescoring_equals_score_table_on_the_same_rows(rescored: Path, expected: pa.Table) -> None:
    """Every lead rescored file to file gets exactly the score, confidence, version and error score_table gives."""
    table = ds.dataset(rescored).to_table().sort_by("lead_id")
    assert table.num_rows == ROWS
    assert table.schema == output_schema(explain=False)
    for name in COMPARED:
        assert table.column(name).to_pylist() == expected.column(name).to_pylist(), name


def test_parquet_rescoring_marks_a_finished_output_with_success_and_keeps_no_staging(rescored: Path) -> None:
    """The output holds one part per task and `_SUCCESS`; the staged files under `_temporary` are gone."""
    names = sorted(p.name for p in rescored.iterdir())
    assert names[0] == "_SUCCESS"  # and no `_temporary`
    parts = names[1:]
    assert len(parts) == 3  # three 1,000-row files, each one task
    assert all(n.startswith("part-") and n.endswith(".zstd.parquet") for n in parts)


def test_parquet_rescoring_with_explain_writes_the_explain_columns(
    spark: SparkSession, tiny_bundle: Path, tmp_path: Path
) -> None:
    """With explain, the parts carry score_table's reasons and drivers for every lead."""
    table = leads_table(200)
    pq.write_table(table, tmp_path / "leads.parquet")
    source, out = str(tmp_path / "leads.parquet"), str(tmp_path / "out")
    score_parquet(spark, source, out, bundle=tiny_bundle, as_of=AS_OF, explain=True)
    got = ds.dataset(out).to_table().sort_by("lead_id")
    want = score_table(table, bundle=tiny_bundle, as_of=AS_OF, explain=True).sort_by("lead_id")
    assert got.schema == output_schema(explain=True)
    for name in ("explained", "reason_raising_fields", "reason_lowering_fields", "driver_fit"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_parquet_rescoring_splits_a_file_into_parts_of_row_groups(
    spark: SparkSession, tiny_bundle: Path, tmp_path: Path
) -> None:
    """A file's row groups are shared among tasks of at most `part_rows` rows; `row` stays unique; nothing is lost."""
    source = tmp_path / "leads.parquet"
    table = leads_table(2500)
    pq.write_table(table, source, row_group_size=500)
    files = input_files(str(source))
    parts = plan_parts(files, read_footers(files), part_rows=1000)
    assert [[s.row_groups for s in p.segments] for p in parts] == [[(0, 1)], [(2, 3)], [(4,)]]
    done = score_parquet(spark, str(source), str(tmp_path / "out"), bundle=tiny_bundle, as_of=AS_OF, part_rows=1000)
    # local[2]: 2,500 rows make 4 tasks of at most 625 rows, so each 500-row group is a task.
    assert (done.parts, done.rows, done.rejected) == (5, 2500, 2)  # INVALID's row 7 and row 1500
    out = ds.dataset(tmp_path / "out").to_table()
    assert sorted(out.column("lead_id").to_pylist()) == sorted(table.column("lead_id").to_pylist())
    assert pc.count_distinct(out.column("row")).as_py() == 2500


def test_small_files_share_a_task_and_their_rows_stay_in_order(
    spark: SparkSession, tiny_bundle: Path, tmp_path: Path
) -> None:
    """Files smaller than a part are read by one task in name order (each task has a fixed cost in PySpark)."""
    source = tmp_path / "export"
    source.mkdir()
    table = leads_table(1200)
    for number in range(12):
        pq.write_table(table.slice(100 * number, 100), source / f"part-{number:02d}.parquet")
    files = input_files(str(source))
    parts = plan_parts(files, read_footers(files), part_rows=250, cores=2)  # as local[2]
    assert [[Path(s.path).name for s in p.segments] for p in parts] == [
        [f"part-{first:02d}.parquet", f"part-{first + 1:02d}.parquet"] for first in range(0, 12, 2)
    ]
    done = score_parquet(spark, str(source), str(tmp_path / "out"), bundle=tiny_bundle, as_of=AS_OF, part_rows=250)
    assert (done.parts, done.rows) == (6, 1200)
    out = ds.dataset(tmp_path / "out").to_table().sort_by("row")
    assert out.column("lead_id").to_pylist() == table.column("lead_id").to_pylist()


def test_a_small_dataset_is_cut_into_tasks_enough_for_every_core(tmp_path: Path) -> None:
    """No more rows a part than TASKS_PER_CORE tasks a core leave: 4 cores, 8,000 rows -> parts of 1,000 rows."""
    source = tmp_path / "leads.parquet"
    pq.write_table(leads_table(8000), source, row_group_size=500)
    parts = plan_parts([str(source)], read_footers([str(source)]), cores=4)
    assert TASKS_PER_CORE == 2
    assert [p.rows for p in parts] == [1000] * 8


def test_parquet_rescoring_skips_hidden_files_and_folders(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """Files named `_...` or `.` (Spark's `_SUCCESS`, `.crc`, `_temporary/`) are not read as data."""
    source = tmp_path / "in"
    (source / "_temporary").mkdir(parents=True)
    pq.write_table(leads_table(10), source / "part-0.parquet")
    pq.write_table(leads_table(5), source / "_temporary" / "part-9.parquet")
    (source / "_SUCCESS").write_bytes(b"")
    (source / ".part-0.parquet.crc").write_bytes(b"not parquet")
    done = score_parquet(spark, str(source), str(tmp_path / "out"), bundle=tiny_bundle, as_of=AS_OF)
    assert (done.parts, done.rows) == (1, 10)


def test_parquet_rescoring_refuses_an_output_holding_files_unless_told_to_overwrite(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """An output with files is refused (Spark's errorifexists); `overwrite` replaces them with the new parts."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.parquet").write_bytes(b"an earlier run")
    with pytest.raises(BatchInputError, match="already holds files: pass mode='overwrite'"):
        score_parquet(spark, str(leads_dir), str(out), bundle=tiny_bundle, as_of=AS_OF)
    assert sorted(p.name for p in out.iterdir()) == ["old.parquet"]
    done = score_parquet(spark, str(leads_dir), str(out), bundle=tiny_bundle, as_of=AS_OF, mode="overwrite")
    assert "old.parquet" not in {p.name for p in out.iterdir()}
    assert ds.dataset(out).count_rows() == done.rows == ROWS


def test_parquet_rescoring_refuses_to_write_into_its_input(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path
) -> None:
    """An output folder holding the input (overwrite would delete the leads) is refused before anything is removed."""
    with pytest.raises(BatchInputError, match="holds the input"):
        score_parquet(spark, str(leads_dir), str(leads_dir.parent), bundle=tiny_bundle, mode="overwrite")
    assert ds.dataset(leads_dir).count_rows() == ROWS


def test_a_failed_parquet_rescoring_leaves_no_part_and_no_success(
    spark: SparkSession, leads_dir: Path, tmp_path: Path
) -> None:
    """A job whose tasks fail (no bundle on the workers) raises and leaves an empty output: no part, no _SUCCESS."""
    out = tmp_path / "out"
    with pytest.raises(Exception, match="no model bundle at"):
        score_parquet(spark, str(leads_dir), str(out), bundle=tmp_path / "missing-bundle", as_of=AS_OF)
    assert list(out.iterdir()) == []


def test_parquet_rescoring_refuses_a_file_with_no_lead_field_before_any_task(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Columns named as a CRM names them are refused from the footers, with the column map to give; nothing written."""
    source = tmp_path / "crm.parquet"
    pq.write_table(pa.table({"Record ID": ["a"], "Job Title": ["VP Sales"]}), source)
    with pytest.raises(ColumnError, match=r"\.withColumnRenamed\('Job Title', 'job_title'\)"):
        score_parquet(spark, str(source), str(tmp_path / "out"), as_of=AS_OF)
    assert not (tmp_path / "out").exists()
    columns = {"Record ID": "lead_id", "Job Title": "job_title"}
    done = score_parquet(spark, str(source), str(tmp_path / "out"), as_of=AS_OF, columns=columns)
    (row,) = ds.dataset(tmp_path / "out").to_table().to_pylist()
    assert (done.rows, row["lead_id"]) == (1, "a")
    assert row["score"] is not None


def test_parquet_rescoring_of_a_dataset_with_no_rows_writes_an_empty_part(
    spark: SparkSession, tiny_bundle: Path, tmp_path: Path
) -> None:
    """Files with no rows: no task runs; the output has one empty part with the scores' schema, and _SUCCESS."""
    source = tmp_path / "empty.parquet"
    pq.write_table(leads_table(1).slice(0, 0), source)
    done = score_parquet(spark, str(source), str(tmp_path / "out"), bundle=tiny_bundle, as_of=AS_OF)
    assert (done.parts, done.rows) == (0, 0)
    out = ds.dataset(tmp_path / "out").to_table()
    assert (out.num_rows, out.schema) == (0, output_schema(explain=False))
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_the_result_says_which_fields_the_files_lack_and_which_columns_were_not_read(
    spark: SparkSession, tiny_bundle: Path, tmp_path: Path
) -> None:
    """A CRM export with one lead field is scored, and the result names what was missing and what was left unread."""
    source = tmp_path / "crm.parquet"
    pq.write_table(pa.table({"Record ID": ["a", "b"], "Job Title": ["VP", None], "website_sessions": [3, 4]}), source)
    done = score_parquet(spark, str(source), str(tmp_path / "out"), bundle=tiny_bundle, as_of=AS_OF)
    assert done.rows == 2
    notes = "\n".join(done.column_notes)
    assert "not in the input, missing in every row: lead_id, company_size" in notes
    assert "'Record ID'" in notes
    assert ".withColumnRenamed('Job Title', 'job_title')" in notes


def test_the_workers_are_checked_once_per_spark_application(spark: SparkSession) -> None:
    """The one-row probe runs at the first job of an application only: later jobs start at once."""
    WORKERS_CHECKED.discard(spark.sparkContext.applicationId)
    group = f"probe-{uuid.uuid4().hex[:8]}"
    spark.sparkContext.setJobGroup(group, "check_workers twice")
    try:
        check_workers(spark)
        check_workers(spark)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    assert len(spark.sparkContext.statusTracker().getJobIdsForGroup(group)) == 1
    assert spark.sparkContext.applicationId in WORKERS_CHECKED


def test_workers_that_cannot_import_leadscore_get_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    """Workers running a Python without leadscore: both ways stop before any task, naming that Python and the fix."""
    pq.write_table(leads_table(5), tmp_path / "leads.parquet")
    script = f"""
import sys
from pyspark.sql import SparkSession
from leadscore.spark import score_dataframe, score_parquet
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
try:
    score_parquet(spark, {str(tmp_path / "leads.parquet")!r}, {str(tmp_path / "out")!r})
except ModuleNotFoundError as exc:
    print("refused:", exc)
try:
    score_dataframe(spark.read.parquet({str(tmp_path / "leads.parquet")!r}))
except ModuleNotFoundError as exc:
    print("the DataFrame path refused:", exc)
"""
    # The interpreter this virtual environment was made from: no leadscore in it (Spark's own modules come with
    # Spark, on the workers' path).
    env = {**os.environ, "PYSPARK_PYTHON": sys._base_executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert f"refused: Spark's Python workers ({sys._base_executable}) cannot import leadscore" in done.stdout, (
        done.stdout + done.stderr[-2000:]
    )
    assert "PYSPARK_PYTHON" in done.stdout
    assert not (tmp_path / "out").exists()
    assert "the DataFrame path refused: Spark's Python workers" in done.stdout


def test_a_missing_input_is_refused(spark: SparkSession, tmp_path: Path) -> None:
    """An input path that does not exist is a BatchInputError naming it, before Spark runs anything."""
    with pytest.raises(BatchInputError, match="does not exist"):
        score_parquet(spark, str(tmp_path / "nowhere"), str(tmp_path / "out"))


def test_glue_script_rescores_a_dataset_on_s3_with_a_bundle_on_s3(
    rgw: RgwServer, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Glue script, run as spark-submit runs it, rescores leads on S3 with a bundle on S3 into scores on S3.

    Its own local Spark, the AWS variables as an instance role would give them, a real S3 server; the tasks read
    and write S3 themselves.
    """
    # Ceph RGW refuses the SDK's default aws-chunked uploads (see the lake's S3 settings): for this test's client.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    bucket = make_bucket(rgw)
    s3 = rgw.filesystem(REGION)
    table = leads_table(1200)
    for part in range(2):
        pq.write_table(table.slice(600 * part, 600), f"{bucket}/crm/export-{part}.parquet", filesystem=s3)
    pafs.copy_files(
        str(tiny_bundle), f"{bucket}/models/v1", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": rgw.access_key,
        "AWS_SECRET_ACCESS_KEY": rgw.secret_key,
        "AWS_ENDPOINT_URL": rgw.endpoint,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    script = ROOT / "deploy" / "glue" / "rescore_job.py"
    # The output as open-source Spark names S3 (s3a://): the same store.
    argv = ["--input", f"s3://{bucket}/crm/", "--output", f"s3a://{bucket}/scores/", "--as-of", "2026-06-01T00:00:00"]
    argv += ["--model-uri", f"s3://{bucket}/models/v1/"]
    done = subprocess.run(
        [sys.executable, str(script), *argv], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "leadscore rescore: 1199 leads scored, 1 rejected" in done.stdout
    names = sorted(f.base_name for f in s3.get_file_info(pafs.FileSelector(f"{bucket}/scores")))
    assert names[0] == "_SUCCESS"
    assert len(names) == 3  # _SUCCESS and a part per file
    got = ds.dataset(f"{bucket}/scores", filesystem=s3).to_table().sort_by("lead_id")
    want = score_table(table, bundle=tiny_bundle, as_of=AS_OF).sort_by("lead_id")
    for name in COMPARED:
        assert got.column(name).equals(want.column(name)), name
