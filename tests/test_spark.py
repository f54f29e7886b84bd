"""Scoring a Spark DataFrame (leadscore.spark) with real pyspark in local mode, Parquet in and out.

One SparkSession serves the module (the JVM takes ~10 s to start). Spark's own `s3a://` filesystem cannot run
here (the hadoop-aws jars cannot be fetched): S3 is covered by the bundle download, on a real S3 server.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
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

from leadscore.columnar import output_schema, score_table
from leadscore.columns import ColumnError
from leadscore.model.bundle import MANIFEST_FILE, Manifest, default_bundle_dir
from leadscore.spark import ARROW_BATCH_CONF, ARROW_BATCH_ROWS, local_bundle_dir, score_dataframe, spark_schema
from leadscore.training.synth import synthesize
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


def test_glue_job_hands_the_scorer_large_arrow_batches(
    spark: SparkSession, leads_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """The job sets the session's Arrow batch size to ARROW_BATCH_ROWS, not Spark's default of 10,000."""
    spark.conf.unset(ARROW_BATCH_CONF)
    assert spark.conf.get(ARROW_BATCH_CONF) == "10000"
    argv = ["--input", str(leads_dir), "--output", str(tmp_path / "out"), "--model-uri", str(tiny_bundle)]
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
