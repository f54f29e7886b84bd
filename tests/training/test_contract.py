"""Training data read through the API's contract: the same values accepted and refused, problems by row."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from leadscore.columnar import score_table
from leadscore.errors import LeadscoreError
from leadscore.training.contract import OUTCOME, TrainingDataError, read_table, validate_training_table
from leadscore.training.synth import synthesize, write_table


class CsvFile:
    """A synthetic training set written as CSV, whose cells a test can change."""

    def __init__(self, path) -> None:
        self.path = path
        header, *self.lines = path.read_text().splitlines()
        self.header = header.split(",")

    def set(self, row: int, column: str, value: str) -> None:
        """Replace one cell (row counted from 0 after the header) and write the file; values hold no commas."""
        index = self.header.index(f'"{column}"')
        cells = self.lines[row].split(",")
        cells[index] = value
        self.lines[row] = ",".join(cells)
        self.write()

    def write(self) -> None:
        """Write the file from its header and lines."""
        self.path.write_text("\n".join([",".join(self.header), *self.lines]) + "\n")

    def validate(self):
        """The file read and checked as training reads it."""
        return validate_training_table(read_table(self.path))


@pytest.fixture
def csv_file(tmp_path) -> CsvFile:
    """30 synthetic leads with no missing value, as CSV."""
    path = tmp_path / "leads.csv"
    write_table(synthesize(30, seed=3, missing_rate=0.0), path)
    return CsvFile(path)


def test_csv_false_is_false_even_beside_a_refused_word(csv_file):
    """`false` in a CSV boolean column is False (not bool("false")), and a word that is no boolean is refused."""
    for row in range(len(csv_file.lines)):
        csv_file.set(row, "existing_customer", "false")
    assert set(csv_file.validate().columns["existing_customer"]) == {False}
    csv_file.set(4, "existing_customer", "maybe")
    with pytest.raises(
        TrainingDataError, match="row 5, existing_customer: Input should be a valid boolean, got 'maybe'"
    ):
        csv_file.validate()


def test_csv_booleans_are_read_as_rescoring_reads_them(csv_file, tmp_path):
    """`Yes`/`No`/`1`/`0` (any case, padded) mean in training what `leadscore score` takes them to mean."""
    words = [" Yes", "NO", "1", "0", "True ", "false"]
    for row in range(len(csv_file.lines)):
        csv_file.set(row, "existing_customer", words[row % len(words)])
    trained = csv_file.validate().columns["existing_customer"]
    table = read_table(csv_file.path)
    rescored = score_table(table, as_of=datetime(2026, 6, 1, tzinfo=UTC))
    assert rescored["error_field"].null_count == table.num_rows  # every word taken by the batch reader too
    assert list(trained) == [row % len(words) in (0, 2, 4) for row in range(len(csv_file.lines))]


def test_a_csv_in_another_encoding_is_read_in_it_and_refused_as_utf8_with_the_option_to_name(csv_file):
    """A Windows-1252 CSV is refused as UTF-8 (naming --encoding) and read with encoding="cp1252", text intact."""
    csv_file.set(3, "job_title", '"Directeur Général"')
    csv_file.path.write_bytes(csv_file.path.read_text("utf-8").encode("cp1252"))
    with pytest.raises(LeadscoreError, match="the file is not UTF-8: name its encoding with --encoding"):
        read_table(csv_file.path)
    assert read_table(csv_file.path, encoding="cp1252").column("job_title")[3].as_py() == "Directeur Général"


def test_a_value_the_api_refuses_is_refused_with_the_api_message(csv_file):
    """email_engagement_score 7.5 is refused with the API's message and its row."""
    csv_file.set(11, "email_engagement_score", "7.5")
    with pytest.raises(TrainingDataError, match="row 12, email_engagement_score: Input should be less than or equal"):
        csv_file.validate()


def test_a_bad_outcome_is_reported_with_its_row(csv_file):
    """An outcome that is not an integer 1..5 is named with its row and value."""
    csv_file.set(2, OUTCOME, "hot")
    with pytest.raises(TrainingDataError, match=r"row 3, outcome: must be an integer score 1\.\.5, got 'hot'"):
        csv_file.validate()


def test_a_missing_column_is_named():
    """A table without `seniority_level` is refused, naming the column."""
    with pytest.raises(TrainingDataError, match="missing columns: seniority_level"):
        validate_training_table(synthesize(20, seed=1).drop_columns(["seniority_level"]))


def test_missing_columns_can_be_allowed():
    """With allow_missing the absent column trains as all-missing and is reported."""
    data = validate_training_table(synthesize(20, seed=1).drop_columns(["seniority_level"]), allow_missing=True)
    assert data.missing_columns == ("seniority_level",)
    assert data.columns["seniority_level"] == [None] * 20


def test_a_header_with_a_stray_space_is_named(csv_file):
    """A header `Industry ` is refused, naming it and the field it looks like."""
    csv_file.header[csv_file.header.index('"industry"')] = '"Industry "'
    csv_file.write()
    with pytest.raises(TrainingDataError, match=r"`Industry ` \(did you mean `industry`\?\)"):
        csv_file.validate()


def test_unrelated_extra_columns_are_ignored_and_reported():
    """A column unlike any contract field (an export's `crm_owner`) is ignored and listed."""
    table = synthesize(10, seed=1)
    table = table.append_column("crm_owner", pa.array(["ann"] * 10))
    assert validate_training_table(table).ignored_columns == ("crm_owner",)


def test_every_problem_is_counted_and_the_first_are_listed():
    """Many bad rows: the message gives the count and lists the first ones in row order."""
    table = synthesize(100, seed=1, missing_rate=0.0)
    index = table.column_names.index("website_sessions")
    table = table.set_column(index, "website_sessions", pa.array([-1] * 100))
    with pytest.raises(
        TrainingDataError, match=r"^100 problem\(s\) in 100 of 100 rows: row 1, website_sessions"
    ) as err:
        validate_training_table(table)
    assert err.value.message.endswith("and 80 more")


def test_clean_csv_and_parquet_give_the_same_columns(tmp_path):
    """The same data read from CSV (text) and Parquet (typed) gives the same encoder columns."""
    table = synthesize(40, seed=6)
    write_table(table, tmp_path / "a.csv")
    write_table(table, tmp_path / "a.parquet")
    from_csv = validate_training_table(read_table(tmp_path / "a.csv"))
    from_parquet = validate_training_table(read_table(tmp_path / "a.parquet"))
    assert from_csv.columns == from_parquet.columns
    assert from_csv.outcome.tolist() == from_parquet.outcome.tolist()


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    """A CSV saved with a UTF-8 byte order mark (as spreadsheets do) reads its first column as text like the rest."""
    table = synthesize(10, seed=1, missing_rate=0.0)
    names = ["existing_customer", *(n for n in table.column_names if n != "existing_customer")]
    path = tmp_path / "bom.csv"
    write_table(table.select(names), path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    data = validate_training_table(read_table(path))
    assert data.columns["existing_customer"] == table.column("existing_customer").to_pylist()
