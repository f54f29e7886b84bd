"""CRM picklist forms mapped onto the model's categories: keys, the packaged map, files and overrides."""

from __future__ import annotations

import pytest

from leadscore.errors import ConfigError
from leadscore.features import picklists
from leadscore.features.picklists import CategoryMap, load_category_map, parse_category_map, picklist_key
from leadscore.features.spec import COMPANY_SIZES, GEOGRAPHIES, INDUSTRIES, SENIORITY_LEVELS
from leadscore.model.bundle import default_category_map


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("North_America", "north america"),
        ("  MID-level ", "mid level"),
        ("c\u2013suite", "c suite"),
        ("11-50", "11 50"),
    ],
)
def test_keys_ignore_case_underscores_hyphens_dashes_and_spacing(given, key):
    """`_`, `-`, dashes and runs of spaces compare as one space; case does not matter."""
    assert picklist_key(given) == key


@pytest.mark.parametrize(
    ("field", "form", "meaning"),
    [
        ("company_size", "11-50", COMPANY_SIZES.index("Small")),
        ("company_size", "201-500", COMPANY_SIZES.index("Medium")),
        ("company_size", "10,001+", COMPANY_SIZES.index("Enterprise")),
        ("seniority_level", "c_level", SENIORITY_LEVELS.index("Executive")),
        ("seniority_level", "INDIVIDUAL_CONTRIBUTOR", SENIORITY_LEVELS.index("Mid-Level")),
        ("seniority_level", "Vice-President", SENIORITY_LEVELS.index("VP")),
        ("geography", "north_america", GEOGRAPHIES.index("North America")),
        ("geography", "APAC", GEOGRAPHIES.index("Asia Pacific")),
        ("industry", "logistics", INDUSTRIES.index("Other")),
        ("industry", "COMPUTER_SOFTWARE", INDUSTRIES.index("Software")),
    ],
)
def test_the_packaged_map_knows_common_crm_forms(field, form, meaning):
    """Company size bands, seniority synonyms, region and industry picklist forms reach a vocabulary value."""
    assert default_category_map().code(field, form) == meaning


@pytest.mark.parametrize(
    ("form", "meaning"),
    [
        ("51-200 employees", "Medium"),
        ("1,001-5,000 Employees", "Large"),
        ("10,001+ employees", "Enterprise"),
        ("2-10 employee", "Startup"),
        ("Enterprise employees", "Enterprise"),
    ],
)
def test_a_company_size_is_known_with_its_unit_after_it(form, meaning):
    """A size band followed by `employees` (LinkedIn's and Salesforce's wording) means the band alone."""
    assert default_category_map().code("company_size", form) == COMPANY_SIZES.index(meaning)


@pytest.mark.parametrize(
    ("field", "form"),
    [("company_size", "employees"), ("company_size", "51-200 people"), ("industry", "Retail employees")],
)
def test_the_unit_alone_another_unit_or_another_field_stays_unknown(field, form):
    """Only a trailing `employees` after a company size is dropped: the word alone, or on another field, is unknown."""
    assert default_category_map().code(field, form) is None


def test_the_vocabulary_itself_is_known_without_a_map():
    """With no synonyms, vocabulary values are still matched in any case and spacing; others are unknown."""
    plain = CategoryMap()
    assert plain.code("seniority_level", "mid_level") == SENIORITY_LEVELS.index("Mid-Level")
    assert plain.code("company_size", "11-50") is None


def test_a_map_naming_a_value_outside_the_vocabulary_is_refused():
    """A form mapped to something the model does not know is a configuration error naming both."""
    with pytest.raises(ConfigError, match="'Mega', which is not one of"):
        CategoryMap({"company_size": {"huge": "Mega"}})


def test_a_map_naming_a_field_that_is_not_categorical_is_refused():
    """Only categorical fields have maps."""
    with pytest.raises(ConfigError, match="job_title are not categorical fields"):
        CategoryMap({"job_title": {"boss": "Executive"}})


def test_a_map_of_the_wrong_shape_is_refused():
    """Anything but {field: {form: value}} of strings is refused saying the shape."""
    with pytest.raises(ConfigError, match=r"x.json: a category map is \{field"):
        parse_category_map({"industry": ["Software"]}, "x.json")


def test_a_yaml_file_is_read(tmp_path):
    """A .yaml file is read as YAML."""
    path = tmp_path / "crm.yaml"
    path.write_text("industry:\n  widgets: Manufacturing\n")
    assert load_category_map(path).code("industry", "Widgets") == INDUSTRIES.index("Manufacturing")


def test_a_broken_file_is_refused_naming_it(tmp_path):
    """Invalid JSON is a configuration error naming the file."""
    path = tmp_path / "crm.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"crm\.json is not valid JSON"):
        load_category_map(path)


def test_a_merged_map_adds_forms_and_its_own_win():
    """merged() keeps the base's forms, adds the extra's, and the extra decides a form both list."""
    base = CategoryMap({"industry": {"logistics": "Other", "biotech": "Healthcare"}})
    merged = base.merged(CategoryMap({"industry": {"LOGISTICS": "Manufacturing", "widgets": "Manufacturing"}}))
    assert merged.code("industry", "logistics") == INDUSTRIES.index("Manufacturing")
    assert merged.code("industry", "biotech") == INDUSTRIES.index("Healthcare")
    assert merged.code("industry", "widgets") == INDUSTRIES.index("Manufacturing")


def test_the_map_round_trips_through_its_json(tmp_path):
    """to_json() writes a file load_category_map reads back to the same forms."""
    categories = CategoryMap({"geography": {"emea": "Europe"}})
    path = tmp_path / "m.json"
    path.write_text(categories.to_json())
    assert load_category_map(path).synonyms == categories.synonyms


def test_unknown_values_are_remembered_only_up_to_the_bound(monkeypatch):
    """Past MAX_CACHED_VALUES distinct values a field's lookups are made but no longer remembered."""
    monkeypatch.setattr(picklists, "MAX_CACHED_VALUES", 3)
    categories = CategoryMap()
    answers = [categories.code("industry", f"unknown-{i}") for i in range(10)]
    assert answers == [None] * 10
    assert len(categories._cache["industry"]) == 3
    assert categories.code("industry", "SOFTWARE") == INDUSTRIES.index("Software")
