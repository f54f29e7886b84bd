"""Batch files: formats by name, fixed chunk boundaries whatever the reader's, clear errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from leadscore.batch.io import (
    BatchInputError,
    ParquetReader,
    ParquetWriter,
    bucket_region,
    file_format,
    filesystem,
    open_reader,
)
from leadscore.batch.options import FileFormat
from tests.batch.conftest import lead_table


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("leads.csv", FileFormat.CSV),
        ("s3://b/k/LEADS.PARQUET", FileFormat.PARQUET),
        ("s3a://b/k/leads.csv", FileFormat.CSV),
        ("x.pq", FileFormat.PARQUET),
    ],
)
def test_format_follows_the_extension(path, expected):
    """The format is read from the name, in any case, local or S3."""
    assert file_format(path) is expected


@pytest.mark.parametrize("uri", ["s3://crm-exports/2026/leads.parquet", "s3a://crm-exports/2026/leads.parquet"])
def test_s3_and_s3a_uris_name_the_same_object(uri, monkeypatch):
    """`s3a://` (open-source Spark's and Hadoop's scheme) is S3 as `s3://` is: the same bucket and key."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    fs, inner = filesystem(uri)
    assert isinstance(fs, pafs.S3FileSystem)
    assert inner == "crm-exports/2026/leads.parquet"


_S3_SETTINGS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture
def asked_regions(monkeypatch):
    """No AWS region or endpoint in the environment; S3's answer to "where is this bucket" is eu-west-3, recorded."""
    for name in _S3_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    asked = []

    def resolve(bucket):
        asked.append(bucket)
        return "eu-west-3"

    monkeypatch.setattr(pafs, "resolve_s3_region", resolve)
    bucket_region.cache_clear()
    yield asked
    bucket_region.cache_clear()


def test_a_process_told_no_region_addresses_the_bucket_in_its_own_region(asked_regions):
    """Without AWS_REGION (an EMR executor), S3 is asked where the bucket is, once a bucket, and told nothing else."""
    fs, _ = filesystem("s3://crm-eu/2026/leads.parquet")
    again, _ = filesystem("s3://crm-eu/2026/other.parquet")
    assert (fs.region, again.region) == ("eu-west-3", "eu-west-3")
    assert asked_regions == ["crm-eu"]


def test_a_region_in_the_environment_is_used_without_asking(asked_regions, monkeypatch):
    """AWS_REGION (Fargate, Glue) or AWS_DEFAULT_REGION is taken as given: no request is made for it."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    fs, _ = filesystem("s3://crm-eu/leads.parquet")
    assert fs.region == "ap-south-1"
    assert asked_regions == []


def test_an_s3_compatible_endpoint_is_never_asked_for_a_bucket_region(asked_regions, monkeypatch):
    """With AWS_ENDPOINT_URL (MinIO, Ceph) the bucket is addressed at that endpoint: AWS is not asked."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    filesystem("s3://crm-eu/leads.parquet")
    assert asked_regions == []


def test_where_s3_cannot_be_asked_the_sdk_default_region_stands(asked_regions, monkeypatch):
    """A failed question (offline, no route to S3) leaves the region to the SDK, as before: the filesystem opens."""

    def unreachable(bucket):
        raise OSError(f"When resolving region for bucket '{bucket}': AWS Error NETWORK_CONNECTION")

    monkeypatch.setattr(pafs, "resolve_s3_region", unreachable)
    fs, inner = filesystem("s3://crm-eu/leads.parquet")
    assert isinstance(fs, pafs.S3FileSystem)
    assert inner == "crm-eu/leads.parquet"


def _excel_csv(path, rows: int = 5) -> list[str]:
    """`rows` leads as a CSV in Windows-1252 (as Excel on Windows saves it), accented job titles; the titles."""
    table = lead_table(rows)
    titles = [f"Directeur Général {i}" for i in range(rows)]
    table = table.set_column(table.schema.get_field_index("job_title"), "job_title", pa.array(titles))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    path.write_bytes(sink.getvalue().to_pybytes().decode("utf-8").encode("cp1252"))
    return titles


def test_a_csv_in_another_encoding_is_read_in_it(tmp_path):
    """A Windows-1252 CSV read with encoding="cp1252" gives its text as it was written, header and cells alike."""
    titles = _excel_csv(tmp_path / "excel.csv")
    reader = open_reader(str(tmp_path / "excel.csv"), FileFormat.CSV, encoding="cp1252")
    rows = pa.Table.from_batches([chunk.rows for chunk in reader.chunks()])
    assert rows.column("job_title").to_pylist() == titles


def test_a_csv_that_is_not_utf8_is_refused_with_the_option_to_name_its_encoding(tmp_path):
    """Read as UTF-8, a Windows-1252 file fails with a message that says it is not UTF-8 and names --encoding."""
    _excel_csv(tmp_path / "excel.csv")
    with pytest.raises(BatchInputError, match="the file is not UTF-8: name its encoding with --encoding"):
        list(open_reader(str(tmp_path / "excel.csv"), FileFormat.CSV).chunks())


def test_a_bad_byte_far_into_a_csv_says_after_which_row_it_was_found(tmp_path):
    """Past the first block Arrow reads, a byte that is not UTF-8 fails the read with the rows before it counted."""
    table = lead_table(30_000)
    path = tmp_path / "long.csv"
    pacsv.write_csv(table, path)
    assert path.stat().st_size > 5 << 20  # more than the reader's first block
    last = path.read_bytes().splitlines()[-1]
    with path.open("ab") as handle:
        handle.write(last.replace(b"lead-29999", "lead-caf\xe9".encode("latin-1")) + b"\n")
    reader = open_reader(str(path), FileFormat.CSV, chunk_rows=10_000)
    with pytest.raises(BatchInputError, match=r"after data row [0-9,]+: .*--encoding"):
        list(reader.chunks())


@pytest.mark.parametrize(
    ("encoding", "fmt", "message"),
    [
        ("utf-16", FileFormat.CSV, "convert it to UTF-8 first"),
        ("klingon", FileFormat.CSV, "unknown encoding 'klingon'"),
        ("latin-1", FileFormat.PARQUET, "Parquet text is always UTF-8"),
    ],
)
def test_encodings_that_cannot_apply_are_refused_before_reading(tmp_path, encoding, fmt, message):
    """UTF-16 (wide quotes and commas), an unknown name, or any encoding for Parquet: refused, saying why."""
    path = tmp_path / f"leads.{fmt.value}"
    path.write_bytes(b"")
    with pytest.raises(BatchInputError, match=message):
        open_reader(str(path), fmt, encoding=encoding)


def test_unknown_extension_needs_a_format():
    """A name without a known extension is refused unless the format is given."""
    with pytest.raises(BatchInputError, match="--format"):
        file_format("leads.txt")
    assert file_format("leads.txt", FileFormat.CSV) is FileFormat.CSV


@pytest.mark.parametrize("name", ["leads.parquet", "leads.csv"])
def test_chunks_have_fixed_boundaries_and_keep_every_row(tmp_path, name):
    """Chunks hold exactly the chunk size (the last one less), start where the previous ended, in input order."""
    table = lead_table(1000)
    path = tmp_path / name
    if name.endswith(".csv"):
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=300)
    reader = open_reader(str(path), file_format(name), chunk_rows=128)
    chunks = list(reader.chunks())
    assert [c.size for c in chunks] == [128] * 7 + [104]
    assert [c.start for c in chunks] == list(range(0, 1000, 128))
    ids = [v for c in chunks for v in c.rows.column("lead_id").to_pylist()]
    assert ids == table.column("lead_id").to_pylist()
    assert chunks[-1].progress == reader.total


def test_small_row_groups_are_read_whole(tmp_path):
    """Row groups no larger than two chunks are read whole, as many as fit in a chunk, in input order."""
    table = lead_table(1000)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=100)
    chunks = list(open_reader(str(tmp_path / "in.parquet"), FileFormat.PARQUET, chunk_rows=250).chunks())
    assert [(c.start, c.size, c.progress) for c in chunks] == [(200 * i, 200, 200 * (i + 1)) for i in range(5)]
    ids = [v for c in chunks for v in c.rows.column("lead_id").to_pylist()]
    assert ids == table.column("lead_id").to_pylist()


@pytest.mark.parametrize("chunk_rows", [250, 40])  # row groups read whole, and read in batches
def test_a_parquet_reader_given_row_groups_reads_those_alone(tmp_path, chunk_rows):
    """`row_groups` reads only those row groups, in order, chunks counted from the first of them (a task's part)."""
    table = lead_table(1000)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=100)
    reader = ParquetReader(str(tmp_path / "in.parquet"), chunk_rows, row_groups=[3, 4, 5])
    chunks = list(reader.chunks())
    assert reader.total == 300
    assert chunks[0].start == 0
    ids = [v for c in chunks for v in c.rows.column("lead_id").to_pylist()]
    assert ids == table.column("lead_id").to_pylist()[300:600]


def test_parquet_text_columns_arrive_as_dictionaries(tmp_path):
    """Picklist and title columns are read as dictionaries; lead ids, numbers and text written as numbers are not."""
    table = lead_table(200)
    crm_ids = pa.array(range(200), pa.int64())  # a CRM export with numeric job title codes
    table = table.set_column(table.schema.get_field_index("job_title"), "job_title", crm_ids)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=64)
    rows = pa.concat_tables(
        pa.Table.from_batches([c.rows]) if isinstance(c.rows, pa.RecordBatch) else c.rows
        for c in open_reader(str(tmp_path / "in.parquet"), FileFormat.PARQUET, chunk_rows=100).chunks()
    )
    assert pa.types.is_dictionary(rows.schema.field("industry").type)
    assert rows.schema.field("lead_id").type == pa.string()
    assert rows.schema.field("job_title").type == pa.int64()
    assert rows.schema.field("website_sessions").type == table.schema.field("website_sessions").type
    assert rows.column("industry").to_pylist() == table.column("industry").to_pylist()


def test_a_missing_input_is_an_input_error(tmp_path):
    """A file that does not exist is a clear error, not a traceback."""
    with pytest.raises(BatchInputError, match="cannot read"):
        open_reader(str(tmp_path / "nothing.parquet"), FileFormat.PARQUET)


def _rows(reader) -> pa.Table:
    return pa.concat_tables(
        pa.Table.from_batches([c.rows]) if isinstance(c.rows, pa.RecordBatch) else c.rows for c in reader.chunks()
    )


def test_csv_header_with_a_byte_order_mark_quotes_and_crlf_is_read_by_name(tmp_path):
    """A spreadsheet's CSV (BOM, a quoted name holding a comma and a line break, CRLF): columns by their names."""
    path = tmp_path / "export.csv"
    path.write_bytes(b'\xef\xbb\xbflead_id,"Company,\r\nSize",industry\r\n1,Enterprise,Technology\r\n2,,Retail\r\n')
    reader = open_reader(str(path), FileFormat.CSV, renames={"Company,\r\nSize": "company_size"})
    assert reader.plan.reads == {"lead_id": "lead_id", "Company,\r\nSize": "company_size", "industry": "industry"}
    rows = _rows(reader)
    assert rows.column("lead_id").to_pylist() == ["1", "2"]
    assert rows.column("company_size").to_pylist() == ["Enterprise", None]
    assert rows.column("industry").to_pylist() == ["Technology", "Retail"]


def test_csv_columns_not_read_may_repeat_a_name(tmp_path):
    """Ignored columns (a CRM export repeating `Notes`) do not stop the file; the read ones keep their values."""
    path = tmp_path / "export.csv"
    path.write_text("Notes,industry,Notes\na,Retail,b\n", encoding="utf-8")
    reader = open_reader(str(path), FileFormat.CSV)
    assert reader.plan.ignored == ("Notes", "Notes")
    assert _rows(reader).column("industry").to_pylist() == ["Retail"]


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
def test_a_csv_header_without_rows_has_no_chunks(tmp_path, ending):
    """A header and no data line is an empty input, not an error."""
    path = tmp_path / "empty.csv"
    path.write_bytes(b"lead_id,industry" + ending)
    assert list(open_reader(str(path), FileFormat.CSV).chunks()) == []


def test_an_empty_csv_file_is_an_input_error(tmp_path):
    """A file with not even a header line says so."""
    (tmp_path / "nothing.csv").write_bytes(b"")
    with pytest.raises(BatchInputError, match="no header line"):
        open_reader(str(tmp_path / "nothing.csv"), FileFormat.CSV)


def test_parquet_columns_are_read_under_their_mapped_names(tmp_path):
    """A renamed Parquet column arrives as its lead field, text still as a dictionary; ignored columns are dropped."""
    table = lead_table(300).rename_columns(
        ["Record ID" if n == "lead_id" else "Industry" if n == "industry" else n for n in lead_table(1).column_names]
    )
    table = table.append_column("Owner", pa.array(["x"] * 300))
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=64)
    reader = open_reader(
        str(tmp_path / "in.parquet"), FileFormat.PARQUET, 100, {"Record ID": "lead_id", "Industry": "industry"}
    )
    assert reader.plan.ignored == ("Owner",)
    rows = _rows(reader)
    assert "Owner" not in rows.column_names
    assert "Industry" not in rows.column_names
    assert rows.column("lead_id").to_pylist() == table.column("Record ID").to_pylist()
    assert pa.types.is_dictionary(rows.schema.field("industry").type)
    assert rows.column("industry").to_pylist() == table.column("Industry").to_pylist()


def test_a_csv_with_no_line_break_in_its_first_mebibyte_is_an_input_error(tmp_path):
    """A file that is no CSV (one endless line) is refused after 1 MiB, not read whole as a header."""
    (tmp_path / "blob.csv").write_bytes(b"x" * (2 << 20))
    with pytest.raises(BatchInputError, match="no header line in its first"):
        open_reader(str(tmp_path / "blob.csv"), FileFormat.CSV)


def test_a_missing_csv_is_an_input_error(tmp_path):
    """A CSV that does not exist is a clear error, as a missing Parquet file is."""
    with pytest.raises(BatchInputError, match="cannot read"):
        open_reader(str(tmp_path / "nothing.csv"), FileFormat.CSV)


def test_a_parquet_writer_given_a_partial_path_stages_there_until_closed(tmp_path):
    """`partial` is where the file grows (a staging folder made for it); the output's name appears at close only."""
    table = lead_table(10)
    staged, final = tmp_path / "_temporary" / "job" / "attempt-1", tmp_path / "out" / "part-0.parquet"
    writer = ParquetWriter(str(final), table.schema, partial=str(staged))
    writer.write(table)
    assert staged.exists()
    assert not final.exists()
    writer.close()
    assert not staged.exists()
    assert pq.read_table(final).equals(table)


def test_an_aborted_parquet_writer_leaves_neither_its_partial_nor_its_output(tmp_path):
    """abort() removes the staged file; nothing appears under the output's name."""
    table = lead_table(10)
    staged, final = tmp_path / "stage" / "attempt-1", tmp_path / "part-0.parquet"
    writer = ParquetWriter(str(final), table.schema, partial=str(staged))
    writer.write(table)
    writer.abort()
    assert not staged.exists()
    assert not final.exists()
