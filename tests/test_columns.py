"""Which input columns a batch run reads as lead fields, which it ignores, and the inputs it refuses."""

from __future__ import annotations

import pytest

from leadscore.columns import LEAD_COLUMNS, ColumnError, parse_column_options, plan_columns

HUBSPOT_HEADER = ["Record ID", "Company Size", "Industry", "Job Title", "Lifecycle Stage"]


def test_a_file_of_the_api_field_names_is_read_whole_with_nothing_to_say():
    """Every lead column is read under its own name; nothing is absent, ignored or hinted."""
    plan = plan_columns("in.csv", list(LEAD_COLUMNS))
    assert plan.reads == {name: name for name in LEAD_COLUMNS}
    assert (plan.absent, plan.absent_custom, plan.ignored, plan.notes()) == ((), 0, (), [])


def test_a_file_with_no_lead_field_is_refused_with_the_mappings_its_names_suggest():
    """A CRM export named its own way is refused, naming its columns and a --column for each readable one."""
    with pytest.raises(ColumnError) as refused:
        plan_columns("hubspot.csv", HUBSPOT_HEADER)
    message = refused.value.message
    assert "no column of hubspot.csv is a lead field" in message
    assert "'Lifecycle Stage'" in message
    assert "--column 'Company Size=company_size' --column 'Industry=industry' --column 'Job Title=job_title'" in message


def test_lead_id_alone_is_no_lead_field():
    """A file of ids and nothing to score them on is refused too."""
    with pytest.raises(ColumnError, match="no column"):
        plan_columns("ids.csv", ["lead_id", "Owner"])


def test_mapped_columns_are_read_as_their_fields_and_the_rest_reported():
    """--column renames; absent core fields, absent custom features and ignored columns are reported."""
    plan = plan_columns("hubspot.csv", HUBSPOT_HEADER, {"Record ID": "lead_id", "Industry": "industry"})
    assert plan.reads == {"Record ID": "lead_id", "Industry": "industry"}
    assert plan.ignored == ("Company Size", "Job Title", "Lifecycle Stage")
    assert "company_size" in plan.absent
    assert "lead_id" not in plan.absent
    assert plan.absent_custom == 34
    assert plan.hints == ("--column 'Company Size=company_size'", "--column 'Job Title=job_title'")
    notes = plan.notes()
    assert notes[0].startswith("not in the input, missing in every row: company_size, job_title")
    assert notes[1:] == [
        "custom features not in the input: 34 of 34",
        "input columns ignored: 'Company Size', 'Job Title', 'Lifecycle Stage'",
        "to read them as fields: --column 'Company Size=company_size' --column 'Job Title=job_title'",
    ]


def test_a_custom_features_struct_gives_every_custom_feature():
    """A Parquet `custom_features` struct counts as the custom features (none reported absent)."""
    plan = plan_columns("in.parquet", ["lead_id", "industry", "custom_features"])
    assert plan.absent_custom == 0


@pytest.mark.parametrize(
    ("header", "renames", "message"),
    [
        (HUBSPOT_HEADER, {"Record Id": "lead_id"}, "has no column 'Record Id' (did you mean 'Record ID'?)"),
        (HUBSPOT_HEADER, {"Industry": "industri"}, "'industri' is not a lead field (did you mean industry?)"),
        (["Record ID", "industry"], {"Record ID": "industry"}, "columns 'Record ID' and 'industry' both give industry"),
    ],
)
def test_a_wrong_mapping_is_refused_saying_what_is_wrong(header, renames, message):
    """A --column naming a column the file lacks, a field that does not exist, or a field twice: a clear error."""
    with pytest.raises(ColumnError) as refused:
        plan_columns("in.csv", header, renames)
    assert message in refused.value.message


def test_column_options_split_at_the_last_equals_sign():
    """'Input=field' pairs, spaces trimmed; a name may hold '='; the same pair twice is one."""
    assert parse_column_options([" Company Size = company_size", "a=b=industry", "a=b=industry"]) == {
        "Company Size": "company_size",
        "a=b": "industry",
    }


@pytest.mark.parametrize("value", ["Industry", "=industry", "Industry="])
def test_a_column_option_without_both_sides_is_refused(value):
    """An option missing its input name or its field says how to write it."""
    with pytest.raises(ValueError, match="'Input column=lead_field'"):
        parse_column_options([value])


def test_one_input_column_mapped_to_two_fields_is_refused():
    """The same input column given two fields is an error, not the last one silently."""
    with pytest.raises(ValueError, match="mapped twice"):
        parse_column_options(["Industry=industry", "Industry=job_title"])
