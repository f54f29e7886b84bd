"""The feature spec: the inputs the contract promises, unique model columns, a fingerprint that tracks changes."""

from __future__ import annotations

import dataclasses
import json

from leadscore.features.spec import (
    CATEGORY_FIELDS,
    CORE_FIELDS,
    CUSTOM_FIELDS,
    DRIVERS,
    ENGINEERED_NAMES,
    INPUT_FIELDS,
    N_MODEL_INPUTS,
    SPEC,
    FeatureSpec,
    Group,
    InputField,
    Kind,
)

CONTRACT_CORE_FIELDS = (
    "company_size",
    "industry",
    "job_title",
    "seniority_level",
    "geography",
    "email_engagement_score",
    "website_sessions",
    "pages_viewed",
    "time_on_site",
    "form_fills",
    "content_downloads",
    "campaign_touchpoints",
    "last_campaign_interaction",
    "account_revenue",
    "account_employees",
    "existing_customer",
)


def test_core_inputs_are_the_sixteen_fields_of_the_contract():
    """The spec declares exactly the 16 core fields the API contract names."""
    assert tuple(f.name for f in CORE_FIELDS) == CONTRACT_CORE_FIELDS


def test_custom_inputs_are_custom_feature_1_to_34_as_floats():
    """There are 34 custom inputs, custom_feature_1..34, all numeric and flagged custom."""
    assert [f.name for f in CUSTOM_FIELDS] == [f"custom_feature_{i}" for i in range(1, 35)]
    assert all(f.kind is Kind.FLOAT and f.custom for f in CUSTOM_FIELDS)
    assert len(INPUT_FIELDS) == 50


def test_contract_bounds_are_declared():
    """Engagement is bounded to 0..1, counts and amounts are non-negative, categories carry a vocabulary."""
    by_name = {f.name: f for f in CORE_FIELDS}
    assert (by_name["email_engagement_score"].minimum, by_name["email_engagement_score"].maximum) == (0.0, 1.0)
    for f in CORE_FIELDS:
        if f.kind in (Kind.INT, Kind.FLOAT):
            assert f.minimum == 0, f.name
    assert {f.name for f in CATEGORY_FIELDS} == {"company_size", "industry", "seniority_level", "geography"}
    assert all(f.vocabulary and f.max_length for f in CATEGORY_FIELDS)


def test_engineered_names_are_unique_and_end_with_the_custom_features():
    """Model column names are unique, and the custom features are the last 34 columns in order."""
    assert len(set(ENGINEERED_NAMES)) == len(ENGINEERED_NAMES) == N_MODEL_INPUTS
    assert ENGINEERED_NAMES[-34:] == tuple(f.name for f in CUSTOM_FIELDS)


def test_fingerprint_is_stable():
    """The same spec always hashes to the same sha256 fingerprint."""
    assert SPEC.fingerprint() == FeatureSpec().fingerprint()
    assert SPEC.fingerprint().startswith("sha256:")
    assert len(SPEC.fingerprint()) == len("sha256:") + 64


def test_fingerprint_changes_when_a_vocabulary_changes():
    """Adding one category value changes the fingerprint (it changes what the code columns mean)."""
    industry = next(f for f in SPEC.inputs if f.name == "industry")
    changed: InputField = dataclasses.replace(industry, vocabulary=(*industry.vocabulary, "Aerospace"))
    inputs = tuple(changed if f.name == "industry" else f for f in SPEC.inputs)
    assert dataclasses.replace(SPEC, inputs=inputs).fingerprint() != SPEC.fingerprint()


def test_fingerprint_changes_when_engineered_columns_change():
    """Reordering model columns or changing the derived job levels changes the fingerprint."""
    reordered = dataclasses.replace(SPEC, engineered=tuple(reversed(SPEC.engineered)))
    fewer_levels = dataclasses.replace(SPEC, job_levels=SPEC.job_levels[:-1])
    assert reordered.fingerprint() != SPEC.fingerprint()
    assert fewer_levels.fingerprint() != SPEC.fingerprint()


def test_spec_is_published_as_json():
    """The spec's dict form (served by GET /api/v1/model) is plain JSON with every input and column."""
    published = json.loads(json.dumps(SPEC.as_dict()))
    assert [f["name"] for f in published["inputs"]] == [f.name for f in INPUT_FIELDS]
    assert [f["name"] for f in published["engineered"]] == list(ENGINEERED_NAMES)


def test_every_model_input_maps_to_raw_fields():
    """Each model input names raw input fields it is derived from (itself, when it is one)."""
    names = {f.name for f in INPUT_FIELDS}
    assert all(feature.fields and set(feature.fields) <= names for feature in SPEC.engineered)
    assert next(f for f in SPEC.engineered if f.name == "pages_per_session").fields == (
        "pages_viewed",
        "website_sessions",
    )


def test_every_field_has_a_group_and_a_driver():
    """Core fields are grouped under fit or engagement; the custom features under custom."""
    assert all(f.group.driver in {"fit", "engagement"} for f in INPUT_FIELDS if not f.custom)
    assert all(f.group is Group.CUSTOM for f in INPUT_FIELDS if f.custom)
    assert {f.group.driver for f in INPUT_FIELDS} == set(DRIVERS)


def test_fingerprint_ignores_how_explanations_name_fields():
    """Regrouping, relabelling or re-sourcing for explanations leaves the fingerprint (and trained bundles) alone."""
    inputs = tuple(dataclasses.replace(f, group=Group.WEB, label="X") for f in SPEC.inputs)
    engineered = tuple(dataclasses.replace(f, sources=("industry",)) for f in SPEC.engineered)
    assert dataclasses.replace(SPEC, inputs=inputs, engineered=engineered).fingerprint() == SPEC.fingerprint()
