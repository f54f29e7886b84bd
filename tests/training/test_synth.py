"""The synthetic data set: deterministic, realistic in structure, readable back from Parquet and CSV."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow.compute as pc
import pytest

from leadscore.features.spec import INPUT_FIELDS, SENIORITY_LEVELS
from leadscore.training.contract import OUTCOME, read_table, validate_training_table
from leadscore.training.synth import synthesize, table_to_columns, write_table


@pytest.fixture(scope="module")
def table():
    """A mid-sized synthetic table, large enough for structural statistics."""
    return synthesize(4000, seed=3)


def test_same_seed_gives_an_identical_table():
    """Two runs with one seed produce the same table, value for value."""
    assert synthesize(300, seed=21).equals(synthesize(300, seed=21))


def test_other_seed_gives_another_table():
    """Another seed gives different data."""
    assert not synthesize(300, seed=21).equals(synthesize(300, seed=22))


def test_columns_are_the_api_fields_plus_outcome(table):
    """Columns are the 50 input fields (custom features flattened) and `outcome`."""
    assert table.column_names == [f.name for f in INPUT_FIELDS] + [OUTCOME]


def test_outcome_covers_scores_1_to_5_without_gaps(table):
    """Every row has an outcome in 1..5 and every score occurs."""
    outcome = table.column(OUTCOME)
    assert outcome.null_count == 0
    assert sorted(pc.unique(outcome).to_pylist()) == [1, 2, 3, 4, 5]


def test_inputs_have_missing_values(table):
    """Every input column has some missing values, as real CRM exports do."""
    for name in table.column_names[:-1]:
        assert 0 < table.column(name).null_count < table.num_rows * 0.1, name


def test_seniority_and_engagement_drive_the_outcome(table):
    """Executives score higher than entry-level leads, and engagement rises with the score."""
    rows = table.to_pylist()
    executive = [r[OUTCOME] for r in rows if r["seniority_level"] == SENIORITY_LEVELS[-1]]
    entry = [r[OUTCOME] for r in rows if r["seniority_level"] == SENIORITY_LEVELS[0]]
    assert np.mean(executive) > np.mean(entry) + 0.5
    hot = [r["email_engagement_score"] for r in rows if r[OUTCOME] == 5 and r["email_engagement_score"] is not None]
    cold = [r["email_engagement_score"] for r in rows if r[OUTCOME] == 1 and r["email_engagement_score"] is not None]
    assert np.mean(hot) > np.mean(cold) + 0.1


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_written_table_reads_back_into_utc_columns(tmp_path, suffix):
    """A table written as Parquet or CSV reads back with the same rows and UTC timestamps."""
    path = tmp_path / f"leads{suffix}"
    original = synthesize(50, seed=4)
    write_table(original, path)
    back = read_table(path)
    assert back.num_rows == 50
    assert validate_training_table(back).outcome.tolist() == original.column(OUTCOME).to_pylist()
    stamps = [t for t in table_to_columns(back)["last_campaign_interaction"] if t is not None]
    assert stamps
    assert all(t.tzinfo is not None and t.utcoffset().total_seconds() == 0 for t in stamps)
    assert all(t <= datetime(2026, 1, 1, tzinfo=UTC) for t in stamps)


def test_absent_fields_become_missing_columns():
    """A training table without some input fields still yields every column, all missing."""
    columns = table_to_columns(synthesize(10, seed=1).select(["industry", OUTCOME]))
    assert set(columns) == {f.name for f in INPUT_FIELDS} | {"lead_id"}
    assert columns["job_title"] == [None] * 10


def test_naive_csv_timestamps_are_read_as_utc(tmp_path):
    """Timestamps without offset in a CSV are read as UTC, like the API does."""
    path = tmp_path / "naive.csv"
    path.write_text("last_campaign_interaction,existing_customer,outcome\n2024-08-20T10:30:00,true,3\n")
    columns = table_to_columns(read_table(path))
    assert columns["last_campaign_interaction"] == [datetime(2024, 8, 20, 10, 30, tzinfo=UTC)]
    assert columns["existing_customer"] == [True]
