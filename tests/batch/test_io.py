"""Batch files: formats by name, fixed chunk boundaries whatever the reader's, clear errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from leadscore.batch.io import BatchInputError, file_format, open_reader
from leadscore.batch.options import FileFormat
from tests.batch.conftest import lead_table


@pytest.mark.parametrize(
    ("path", "expected"),
    [("leads.csv", FileFormat.CSV), ("s3://b/k/LEADS.PARQUET", FileFormat.PARQUET), ("x.pq", FileFormat.PARQUET)],
)
def test_format_follows_the_extension(path, expected):
    """The format is read from the name, in any case, local or S3."""
    assert file_format(path) is expected


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
