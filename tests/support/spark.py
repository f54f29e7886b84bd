"""A real local[2] SparkSession for the tests that run Spark: one JVM for the whole test session."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def local_spark() -> SparkSession:
    """The local[2] session on loopback whose Python workers run this interpreter (and so this leadscore).

    `getOrCreate` hands every test module the same live session, so the JVM starts once (~10 s). It is not
    stopped between modules; pyspark ends its JVM when the test process exits.
    """
    os.environ["PYSPARK_PYTHON"] = sys.executable
    # The driver and its block manager listen on loopback only.
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    return (
        SparkSession.builder.master("local[2]")
        .appName("leadscore-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.pyspark.python", sys.executable)
        # As the Glue job sets it: timestamps as Parquet's UTC microseconds, not Spark's legacy INT96.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )
