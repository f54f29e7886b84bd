"""Glue 5.0 (Spark 3.5) job: score a whole CRM export on S3 with a model bundle and write the scores as Parquet.

Arguments (Glue passes each as `--name value`, with its own ones beside them):
  --input       Parquet dataset of leads (s3://bucket/prefix/), columns named as the API's lead fields
  --output      where the scores go (s3://bucket/prefix/): one row per lead, rejected leads with their error
  --model-uri   the model bundle directory (s3://bucket/models/VERSION/); empty: the bundle packaged with leadscore
  --as-of       optional ISO 8601 time recency features are measured from (default: the job's start)
  --explain     "true" adds the reasons and drivers columns
  --mode        Spark save mode for the output: errorifexists (default) or overwrite
  --reader      pyarrow (default): each task reads its row groups, scores them and writes its part itself, the
                rows never in the JVM (`leadscore.spark.score_parquet`); spark: Spark reads and writes the files
                and hands the rows to Python as Arrow batches (`score_dataframe`), e.g. for a dataset whose
                `key=value` folders carry lead fields
  --columns     optional JSON object reading columns named otherwise as lead fields, e.g.
                {"Company Size": "company_size", "Record ID": "lead_id"} (as `leadscore score --column`)

leadscore comes from its wheel (`--additional-python-modules s3://.../leadscore-VERSION-py3-none-any.whl`). The same
script runs on EMR or any Spark 3.5 with `spark-submit rescore_job.py --input ... --output ... --model-uri ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from leadscore.spark import ARROW_BATCH_CONF, ARROW_BATCH_ROWS, score_dataframe, score_parquet

SAVE_MODES = ("errorifexists", "overwrite")
READERS = ("pyarrow", "spark")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The job's own arguments; Glue's (--JOB_NAME, --TempDir, ...) are ignored."""
    parser = argparse.ArgumentParser(prog="rescore_job", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--model-uri", default="")
    parser.add_argument("--as-of", default="", type=str)
    parser.add_argument("--explain", default="false", choices=("true", "false"))
    parser.add_argument("--mode", default="errorifexists", choices=SAVE_MODES)
    parser.add_argument("--columns", default="", type=str)
    parser.add_argument("--reader", default="pyarrow", choices=READERS)
    args, _glue_args = parser.parse_known_args(argv)
    return args


def as_of_time(text: str) -> datetime | None:
    """The `--as-of` value as an aware time (no offset means UTC), None when empty."""
    if not text:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def column_map(text: str) -> dict[str, str]:
    """The `--columns` value: a JSON object of input column names to lead fields (empty: none)."""
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f'--columns must be a JSON object such as {{"Company Size": "company_size"}}, got {text!r}')
    return value


def run(spark: SparkSession, argv: Sequence[str]) -> tuple[int, int]:
    """Read, score and write; the numbers of leads scored and rejected."""
    args = parse_args(argv)
    if args.reader == "pyarrow":
        done = score_parquet(
            spark,
            args.input,
            args.output,
            bundle=args.model_uri or None,
            as_of=as_of_time(args.as_of),
            explain=args.explain == "true",
            columns=column_map(args.columns),
            mode=args.mode,
        )
        for note in done.column_notes:  # fields the export lacks, columns it has that were not read
            print(f"leadscore rescore: {note}")
        return done.scored, done.rejected
    # `scored_at` as Parquet's UTC microseconds (what Athena, pyarrow and DuckDB read as a UTC time), not INT96.
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    # Larger Arrow batches than Spark's 10,000 rows: less fixed cost per batch (see leadscore.spark).
    spark.conf.set(ARROW_BATCH_CONF, str(ARROW_BATCH_ROWS))
    leads = spark.read.parquet(args.input)
    scores = score_dataframe(
        leads,
        bundle=args.model_uri or None,
        as_of=as_of_time(args.as_of),
        explain=args.explain == "true",
        columns=column_map(args.columns),
    )
    scores.write.mode(args.mode).parquet(args.output)
    # Counted from the output's one column (the scores were computed on the executors, as they were written).
    errors = spark.read.parquet(args.output).select("error_field")
    rejected = errors.where(errors.error_field.isNotNull()).count()
    return errors.count() - rejected, rejected


def main() -> None:
    """Entry point on Glue, EMR or spark-submit."""
    spark = SparkSession.builder.appName("leadscore-rescore").getOrCreate()
    scored, rejected = run(spark, sys.argv[1:])
    print(f"leadscore rescore: {scored} leads scored, {rejected} rejected")


if __name__ == "__main__":
    main()
