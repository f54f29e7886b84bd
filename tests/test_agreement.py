"""One contract, three entrances: the same leads through the real API, `leadscore score` and Spark agree.

10,000 synthetic leads (and a few the contract refuses) go to a real server in 500-lead requests, to the command
as a Parquet file, and to Spark as a DataFrame; every field each of them returns is compared.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from leadscore.features.spec import INPUT_FIELDS
from leadscore.spark import score_dataframe, score_parquet
from tests.support.leads import synthetic_leads
from tests.support.server import ServerProcess, start_server
from tests.support.spark import local_spark

LEADS = 10_000
REQUEST_LEADS = 500
# Leads the API refuses, each with the field that fails: sent to the API one request each.
INVALID: tuple[tuple[str, Any], ...] = (("email_engagement_score", 1.5), ("website_sessions", -3), ("form_fills", 2.5))
COMPARED = ("score", "confidence", "model_version")


def flat(lead: dict[str, Any]) -> dict[str, Any]:
    """An API lead as a CRM row: custom features as flat columns."""
    row = {k: v for k, v in lead.items() if k != "custom_features"}
    row.update(lead.get("custom_features", {}))
    return row


def rows_table(leads: list[dict[str, Any]]) -> pa.Table:
    """The leads as an Arrow table, every lead field a column (missing values null)."""
    names = ["lead_id", *(f.name for f in INPUT_FIELDS)]
    return pa.Table.from_pylist([{name: flat(lead).get(name) for name in names} for lead in leads])


@pytest.fixture(scope="module")
def leads() -> list[dict[str, Any]]:
    """The valid leads, then one invalid lead per INVALID entry (ids bad-0..)."""
    valid = synthetic_leads(LEADS, seed=31)
    bad = [{**valid[i], "lead_id": f"bad-{i}", name: value} for i, (name, value) in enumerate(INVALID)]
    return valid + bad


@pytest.fixture(scope="module")
def api(leads, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real server's answers: per valid lead its score fields, per invalid lead its (field, message)."""
    process: ServerProcess = start_server(tmp_path_factory.mktemp("api"), env={"LEADSCORE_MODEL_DIR": str(tiny_bundle)})
    started = datetime.now(UTC)
    scores: dict[str, dict[str, Any]] = {}
    errors: dict[str, tuple[str, str]] = {}
    try:
        with httpx.Client(base_url=process.url, timeout=60) as client:
            valid = leads[:LEADS]
            for start in range(0, LEADS, REQUEST_LEADS):
                chunk = valid[start : start + REQUEST_LEADS]
                body = client.post("/api/v1/scoring/score", json={"leads": chunk}).raise_for_status().json()
                for lead, result in zip(chunk, body["scores"], strict=True):
                    scores[lead["lead_id"]] = {**result, "model_version": body["model_version"]}
            for lead in leads[LEADS:]:
                response = client.post("/api/v1/scoring/score", json={"leads": [lead]})
                assert response.status_code == 422, response.text
                (error,) = response.json()["errors"]
                errors[lead["lead_id"]] = (error["field"], error["message"])
    finally:
        process.stop()
    finished = datetime.now(UTC)
    # The API measures recency from its own clock: the others measure from the middle of the API's run.
    return {"scores": scores, "errors": errors, "as_of": started + (finished - started) / 2}


@pytest.fixture(scope="module")
def leads_file(leads, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The leads as one Parquet file (a CRM export)."""
    path = tmp_path_factory.mktemp("export") / "leads.parquet"
    pq.write_table(rows_table(leads), path)
    return path


@pytest.fixture(scope="module")
def cli(api, leads_file: Path, tiny_bundle: Path) -> dict[str, Any]:
    """`leadscore score` run for real: the scores by lead id, the rejects by lead id."""
    out = leads_file.with_name("scores.parquet")
    rejects = leads_file.with_name("rejects.csv")
    command = ["score", str(leads_file), "--out", str(out), "--rejects", str(rejects), "--bundle", str(tiny_bundle)]
    result = subprocess.run(
        [sys.executable, "-m", "leadscore", *command, "--as-of", api["as_of"].isoformat(), "--workers", "1", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # 1: some rows were rejected
    with rejects.open(newline="") as handle:
        refused = {row["lead_id"]: (row["field"], row["message"]) for row in csv.DictReader(handle)}
    return {"scores": {r["lead_id"]: r for r in pq.read_table(out).to_pylist()}, "errors": refused}


@pytest.fixture(scope="module")
def spark_out(api, leads_file: Path, tiny_bundle: Path) -> dict[str, Any]:
    """Spark's scores of the same file, by lead id, and its rejected rows' (field, message)."""
    spark: SparkSession = local_spark()
    df = spark.read.parquet(str(leads_file))
    rows = [r.asDict() for r in score_dataframe(df, bundle=tiny_bundle, as_of=api["as_of"]).collect()]
    return {
        "scores": {r["lead_id"]: r for r in rows if r["error_field"] is None},
        "errors": {r["lead_id"]: (r["error_field"], r["error_message"]) for r in rows if r["error_field"]},
    }


@pytest.fixture(scope="module")
def spark_files_out(
    api, leads_file: Path, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The same file rescored file to file on Spark (`score_parquet`, the Glue job's default), as spark_out."""
    out = tmp_path_factory.mktemp("spark-files") / "scores"
    score_parquet(local_spark(), str(leads_file), str(out), bundle=tiny_bundle, as_of=api["as_of"])
    rows = pq.read_table(out).to_pylist()
    return {
        "scores": {r["lead_id"]: r for r in rows if r["error_field"] is None},
        "errors": {r["lead_id"]: (r["error_field"], r["error_message"]) for r in rows if r["error_field"]},
    }


@pytest.mark.parametrize("entrance", ["cli", "spark_out", "spark_files_out"])
def test_every_valid_lead_gets_the_api_score_confidence_and_version(api, entrance: str, request) -> None:
    """For each of the 10,000 valid leads, score, confidence and model version equal the API's."""
    other = request.getfixturevalue(entrance)["scores"]
    expected = api["scores"]
    assert len(expected) == LEADS
    differing = [
        (lead_id, name, want[name], other[lead_id][name])
        for lead_id, want in expected.items()
        for name in COMPARED
        if other[lead_id][name] != want[name]
    ]
    assert differing == []


@pytest.mark.parametrize("entrance", ["cli", "spark_out", "spark_files_out"])
def test_refused_leads_carry_the_api_field_and_message(api, entrance: str, request) -> None:
    """Each lead the API refuses is refused by the other entrance with the API's field and message."""
    assert request.getfixturevalue(entrance)["errors"] == api["errors"]
