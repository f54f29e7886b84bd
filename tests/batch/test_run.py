"""`score_file`: whole files scored in chunks, in input order, with rejects, on S3, recorded as a batch run."""

from __future__ import annotations

import csv
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from leadscore import score_table
from leadscore.api.schemas import Lead
from leadscore.batch import score_file
from leadscore.batch.options import FileFormat
from leadscore.batch.run import Summary
from leadscore.errors import LeadscoreError
from tests.batch.conftest import AS_OF, lead_table
from tests.support.lake import local_settings, table_rows
from tests.support.leads import synthetic_leads


def _expected(table: pa.Table, bundle) -> pa.Table:
    return score_table(table, bundle=bundle, as_of=AS_OF)


def _api_message(field: str, value: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Lead.model_validate({field: value})
    return caught.value.errors()[0]["msg"]


@pytest.mark.parametrize(("row_group", "chunk"), [(250, 97), (100, 250)])
def test_parquet_rows_keep_their_order_across_chunks(tmp_path, leads, tiny_bundle, row_group, chunk):
    """Chunks smaller than the file (cut here, or whole row groups read where scored) keep every row in order."""
    pq.write_table(leads, tmp_path / "in.parquet", row_group_size=row_group)
    summary = score_file(
        tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=chunk, workers=1, as_of=AS_OF, bundle=tiny_bundle
    )
    out = pq.read_table(tmp_path / "out.parquet")
    expected = _expected(leads, tiny_bundle)
    assert out["row"].to_pylist() == list(range(leads.num_rows))
    assert out["lead_id"].equals(leads["lead_id"])
    assert out["score"].equals(expected["score"])
    assert out["confidence"].equals(expected["confidence"])
    assert (summary.rows, summary.scored, summary.rejected) == (1000, 1000, 0)
    assert summary.scores == {s: pc.sum(pc.equal(expected["score"], s)).as_py() for s in range(1, 6)}


def test_threads_keep_order_and_row_numbers_across_chunks_and_slices(tmp_path, leads, tiny_bundle, monkeypatch):
    """Two threads, chunks cut into slices for the core: every row keeps its place and its input row number."""
    monkeypatch.setattr("leadscore.batch.work.SLICE_ROWS", 97)
    pq.write_table(leads, tmp_path / "in.parquet", row_group_size=300)
    summary = score_file(
        tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=250, workers=2, as_of=AS_OF, bundle=tiny_bundle
    )
    out = pq.read_table(tmp_path / "out.parquet")
    expected = _expected(leads, tiny_bundle)
    assert out["row"].to_pylist() == list(range(leads.num_rows))
    assert out["lead_id"].equals(leads["lead_id"])
    assert out["confidence"].equals(expected["confidence"])
    assert summary.workers == 2


def test_a_failed_run_leaves_no_output(tmp_path, leads):
    """A run that fails after it started (here: no model) leaves no output or rejects file, whole or partial."""
    pq.write_table(leads, tmp_path / "in.parquet")
    with pytest.raises(LeadscoreError, match="does not exist"):
        score_file(tmp_path / "in.parquet", tmp_path / "out.csv", workers=2, bundle=tmp_path / "no-bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


@pytest.mark.parametrize(("rows", "rate"), [(12, False), (250_000, True)])
def test_the_summary_gives_a_rate_for_runs_of_many_rows(rows, rate):
    """rows/s is said for a run of many rows only: for a few, it would measure the model's loading."""
    summary = Summary("in", "out", "rej", rows, rows, 0, dict.fromkeys(range(1, 6), 0), 2.5, 2, "1.0.0", "now")
    assert ("rows/s" in summary.text()) is rate


def test_csv_gives_the_scores_of_parquet(tmp_path, leads, tiny_bundle):
    """The same leads as CSV text (CSV out too) score exactly as the typed Parquet columns."""
    pacsv.write_csv(leads, tmp_path / "in.csv")
    score_file(tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=300, workers=1, as_of=AS_OF, bundle=tiny_bundle)
    out = pacsv.read_csv(tmp_path / "out.csv")
    expected = _expected(leads, tiny_bundle)
    assert out["score"].to_pylist() == expected["score"].to_pylist()
    assert out["confidence"].to_pylist() == expected["confidence"].to_pylist()
    assert out["lead_id"].to_pylist() == leads["lead_id"].to_pylist()


def test_crm_boolean_text_means_what_it_says(tmp_path, tiny_bundle):
    """`false`, `FALSE`, `No` score as False, `true`, `Yes`, `1` as True, an empty cell as missing."""
    forms = [("false", False), ("FALSE", False), ("No", False), ("true", True), ("Yes", True), ("1", True), ("", None)]
    base = lead_table(1).drop_columns(["existing_customer"])
    rows = pa.concat_tables([base] * len(forms))
    typed = rows.append_column("existing_customer", pa.array([v for _, v in forms], pa.bool_()))
    text = rows.append_column("existing_customer", pa.array([t for t, _ in forms]))
    with (tmp_path / "in.csv").open("w", newline="") as f:  # written by hand: Arrow would quote the empty cell
        writer = csv.writer(f)
        writer.writerow(text.column_names)
        writer.writerows(zip(*(c.to_pylist() for c in text.columns), strict=True))
    score_file(tmp_path / "in.csv", tmp_path / "out.parquet", workers=1, as_of=AS_OF, bundle=tiny_bundle)
    out = pq.read_table(tmp_path / "out.parquet")
    expected = _expected(typed, tiny_bundle)
    assert out["confidence"].to_pylist() == expected["confidence"].to_pylist()
    assert out["error_field"].null_count == len(forms)


def test_refused_rows_go_to_the_rejects_file(tmp_path, tiny_bundle):
    """Rows the API would refuse are not scored: the rejects file names their row, data row, field and message."""
    leads = lead_table(300)
    sessions = [str(v) if v is not None else "" for v in leads["website_sessions"].to_pylist()]
    sessions[2], sessions[150] = "-2", "many"
    pacsv.write_csv(leads.set_column(7, "website_sessions", pa.array(sessions)), tmp_path / "in.csv")
    summary = score_file(tmp_path / "in.csv", tmp_path / "out.parquet", chunk_rows=100, workers=1, bundle=tiny_bundle)
    with (tmp_path / "out.parquet.rejects.csv").open(newline="") as f:
        rejects = list(csv.DictReader(f))
    assert rejects == [
        {
            "row": "2",
            "data_row": "3",
            "lead_id": "lead-2",
            "field": "website_sessions",
            "message": _api_message("website_sessions", -2),
        },
        {
            "row": "150",
            "data_row": "151",
            "lead_id": "lead-150",
            "field": "website_sessions",
            "message": "Input should be a valid integer",
        },
    ]
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.num_rows == 300
    assert [i for i, s in enumerate(out["score"].to_pylist()) if s is None] == [2, 150]
    assert [out["lead_id"][int(r["row"])].as_py() for r in rejects] == [r["lead_id"] for r in rejects]
    assert (summary.scored, summary.rejected) == (298, 2)


def test_s3_input_and_output(tmp_path, leads, tiny_bundle, s3_bucket):
    """s3:// paths are read and written through the AWS variables (endpoint, keys, region) on a real S3 server."""
    bucket, s3 = s3_bucket
    pq.write_table(leads, f"{bucket}/in/leads.parquet", filesystem=s3)
    summary = score_file(
        f"s3://{bucket}/in/leads.parquet",
        f"s3://{bucket}/out/scores.csv",
        workers=1,
        as_of=AS_OF,
        bundle=tiny_bundle,
    )
    with s3.open_input_stream(f"{bucket}/out/scores.csv") as f:
        out = pacsv.read_csv(f)
    assert out["score"].to_pylist() == _expected(leads, tiny_bundle)["score"].to_pylist()
    assert s3.get_file_info(f"{bucket}/out/scores.csv.rejects.csv").size > 0
    assert summary.rows == leads.num_rows


def test_s3_csv_export_with_a_byte_order_mark_and_its_own_names(tmp_path, leads, tiny_bundle, s3_bucket):
    """A spreadsheet-saved CSV on S3 (byte order mark, CRM headers) scores as the same leads under the API's names."""
    bucket, s3 = s3_bucket
    crm = leads.rename_columns(
        ["Record ID" if n == "lead_id" else "Job Title" if n == "job_title" else n for n in leads.column_names]
    )
    pacsv.write_csv(crm, tmp_path / "export.csv")
    with s3.open_output_stream(f"{bucket}/in/export.csv") as f:
        f.write(b"\xef\xbb\xbf" + (tmp_path / "export.csv").read_bytes())
    summary = score_file(
        f"s3://{bucket}/in/export.csv",
        tmp_path / "out.parquet",
        workers=1,
        as_of=AS_OF,
        bundle=tiny_bundle,
        columns={"Record ID": "lead_id", "Job Title": "job_title"},
    )
    out = pq.read_table(tmp_path / "out.parquet")
    assert out["lead_id"].to_pylist() == leads["lead_id"].to_pylist()
    assert out["score"].to_pylist() == _expected(leads, tiny_bundle)["score"].to_pylist()
    assert (summary.rows, summary.absent_fields, summary.ignored_columns) == (leads.num_rows, (), ())


def test_a_recorded_run_is_recorded_once(tmp_path, leads, tiny_bundle):
    """--record writes every scored row as source=batch with the run id; the same run id again adds nothing."""
    settings = local_settings(tmp_path, model_dir=tiny_bundle)
    pq.write_table(leads, tmp_path / "in.parquet")
    options = {"chunk_rows": 400, "workers": 1, "bundle": tiny_bundle, "record": True, "run_id": "crm-1"}
    first = score_file(tmp_path / "in.parquet", tmp_path / "a.parquet", settings=settings, **options)
    second = score_file(tmp_path / "in.parquet", tmp_path / "b.parquet", settings=settings, **options)
    rows = table_rows(settings)
    assert rows.num_rows == leads.num_rows
    assert set(rows["source"].to_pylist()) == {"batch"}
    assert set(rows["run_id"].to_pylist()) == {"crm-1"}
    assert sorted(rows["lead_id"].to_pylist()) == sorted(leads["lead_id"].to_pylist())
    assert (first.recorded_rows, second.recorded_rows, second.already_recorded_rows) == (1000, 0, 1000)


class _FrozenClock(datetime):
    """The API's clock stopped at AS_OF: its recency features are measured from the batch run's --as-of."""

    @classmethod
    def now(cls, tz=None):
        return AS_OF.astimezone(tz)


def test_the_api_and_the_batch_agree_on_every_lead(tmp_path, client, monkeypatch, tiny_bundle):
    """10,000 leads scored through the API (500 a request) and through score_file: same score and confidence."""
    monkeypatch.setattr("leadscore.api.routes.datetime", _FrozenClock)
    leads = synthetic_leads(10_000, seed=21)
    api: list[tuple[int, float]] = []
    for start in range(0, len(leads), 500):
        response = client.post("/api/v1/scoring/score", json={"leads": leads[start : start + 500]})
        assert response.status_code == 200, response.text
        api.extend((s["score"], s["confidence"]) for s in response.json()["scores"])
    table = lead_table(10_000, seed=21)
    pq.write_table(table, tmp_path / "in.parquet")
    score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", workers=1, as_of=AS_OF, bundle=tiny_bundle)
    out = pq.read_table(tmp_path / "out.parquet")
    assert list(zip(out["score"].to_pylist(), out["confidence"].to_pylist(), strict=True)) == api


@pytest.mark.parametrize("name", ["out.parquet", "out.csv"])
def test_explain_adds_the_reasons(tmp_path, tiny_bundle, name):
    """--explain adds the core's explain columns (lists as `a|b` text in CSV)."""
    leads = lead_table(40)
    pq.write_table(leads, tmp_path / "in.parquet")
    score_file(tmp_path / "in.parquet", tmp_path / name, workers=1, explain=True, as_of=AS_OF, bundle=tiny_bundle)
    expected = score_table(leads, bundle=tiny_bundle, as_of=AS_OF, explain=True)
    out = pq.read_table(tmp_path / name) if name.endswith(".parquet") else pacsv.read_csv(tmp_path / name)
    assert out["driver_fit"].to_pylist() == expected["driver_fit"].to_pylist()
    raising = expected["reason_raising_fields"].to_pylist()
    if name.endswith(".csv"):
        assert out["reason_raising_fields"].to_pylist() == ["|".join(r) or None for r in raising]
    else:
        assert out["reason_raising_fields"].to_pylist() == raising


def test_a_run_interrupted_while_its_output_opens_leaves_no_partial_file(tmp_path, monkeypatch):
    """A signal between the `.partial` file's creation and its writer being kept: abort still deletes the file.

    Seen once under load: SIGINT right as the first chunk was written left `out.parquet.partial`.
    """
    from leadscore.batch import run  # noqa: PLC0415

    real_open = run.open_writer

    def interrupted(*args: object) -> object:
        real_open(*args)  # the file exists now
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "open_writer", interrupted)
    writer = run._LazyWriter(str(tmp_path / "out.parquet"), FileFormat.PARQUET)
    with pytest.raises(KeyboardInterrupt):
        writer.write(pa.table({"row": pa.array([0], pa.int64())}))
    assert (tmp_path / "out.parquet.partial").exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_run_interrupted_while_its_rejects_file_opens_leaves_nothing(tmp_path, leads, tiny_bundle, monkeypatch):
    """A signal right after `<out>.rejects.csv.partial` is created, the run's first step: no file is left."""
    from leadscore.batch import run  # noqa: PLC0415

    real_open = run.open_writer

    def interrupted(path: str, *args: object) -> object:
        writer = real_open(path, *args)  # the file exists now
        if path.endswith(".rejects.csv"):
            raise KeyboardInterrupt
        return writer

    monkeypatch.setattr(run, "open_writer", interrupted)
    pq.write_table(leads, tmp_path / "in.parquet")
    with pytest.raises(KeyboardInterrupt):
        score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", workers=1, bundle=tiny_bundle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_parquet_output_dictionary_encodes_only_repeating_columns(tmp_path, tiny_bundle):
    """Scores, versions, times and errors are dictionary-encoded; row numbers, ids and confidences are not."""
    pq.write_table(lead_table(300), tmp_path / "in.parquet")
    score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", workers=1, as_of=AS_OF, bundle=tiny_bundle)
    group = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    dictionary = {name for name, used in encodings.items() if "RLE_DICTIONARY" in used}
    assert dictionary == {"score", "model_version", "scored_at", "error_field", "error_message"}
