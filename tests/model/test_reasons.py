"""Reasons: SHAP values summed per business field and driver, add up to the margin, and read as sentences."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from leadscore.features.encode import encode
from leadscore.features.explained import EXPLAIN_COLUMNS
from leadscore.features.spec import CORE_BY_NAME, INPUT_FIELDS
from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.model.explain import TreeExplainer
from leadscore.model.reasons import FIELD_WEIGHTS, TOP_K, describe, explain, explanation_columns, render
from leadscore.training.synth import AS_OF, synthesize, table_to_columns


@pytest.fixture(scope="module")
def batch(tiny_scorer):
    """200 synthetic leads of the tiny model: columns, encoded matrix, predicted classes, explanations."""
    table = synthesize(200, seed=21)
    columns = table_to_columns(table)
    matrix = encode(columns, table.num_rows, AS_OF, categories=tiny_scorer.categories).matrix
    classes = tiny_scorer.predict_proba(matrix).argmax(axis=1)
    explainer = TreeExplainer.from_booster(tiny_scorer.booster)
    return columns, matrix, classes, explain(explainer, matrix, classes)


def test_each_model_input_is_shared_out_whole():
    """Every model input's contribution goes, in full, to the raw fields it is derived from."""
    assert np.allclose(FIELD_WEIGHTS.sum(axis=1), 1.0)


def test_drivers_and_base_add_up_to_the_margin(tiny_scorer, batch):
    """Fit + engagement + custom + base is the model's margin of the predicted score, per lead."""
    _, matrix, classes, explanations = batch
    margin = tiny_scorer.booster.inplace_predict(matrix, predict_type="margin").reshape(-1, 5)
    expected = margin[np.arange(matrix.shape[0]), classes]
    assert np.abs(explanations.drivers.sum(axis=1) + explanations.base - expected).max() <= 1e-5
    assert np.allclose(explanations.fields.sum(axis=1), explanations.drivers.sum(axis=1))


def test_top_factors_are_the_largest_of_each_sign(batch):
    """Raising factors are the largest positive field sums, lowering the most negative, in order."""
    _, _, _, explanations = batch
    for row, raising, lowering in zip(explanations.fields, explanations.raising, explanations.lowering, strict=True):
        up = [f for f in raising if f >= 0]
        down = [f for f in lowering if f >= 0]
        assert [row[f] for f in up] == sorted(row[row > 0], reverse=True)[:TOP_K]
        assert [row[f] for f in down] == sorted(row[row < 0])[:TOP_K]


def test_rendered_reasons_carry_field_value_and_sentence(batch):
    """Each factor names its field, the lead's raw value, its contribution, and a sentence with the score."""
    columns, _, classes, explanations = batch
    rendered = render(explanations, columns)
    assert len(rendered) == explanations.size
    first = rendered[0]
    assert set(first["drivers"]) == {"base", "fit", "engagement", "custom"}
    for factor in first["reasons"]["raising"]:
        assert factor["contribution"] > 0
        assert factor["text"].endswith(f"raises the chance of a {classes[0] + 1}")
    for factor in first["reasons"]["lowering"]:
        assert factor["contribution"] < 0
        assert factor["value"] == columns[factor["field"]][0] or isinstance(factor["value"], str)


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("seniority_level", "Executive", "Seniority: Executive"),
        ("form_fills", 0, "No form fills"),
        ("form_fills", 3, "Form fills: 3"),
        ("existing_customer", False, "Existing customer: no"),
        ("industry", None, "Industry unknown"),
        ("time_on_site", 32.5, "Time on site: 32.5 minutes"),
        ("account_revenue", 5_000_000.0, "Account revenue: 5,000,000 USD"),
        ("email_engagement_score", 0.8512, "Email engagement score: 0.851"),
        (
            "last_campaign_interaction",
            datetime(2024, 8, 20, 10, 30, tzinfo=UTC),
            "Last campaign interaction: 2024-08-20",
        ),
    ],
)
def test_field_and_value_read_as_a_marketing_user_would(field, value, text):
    """The field's label and the value, formatted for people."""
    assert describe(CORE_BY_NAME[field], value) == text


def test_every_field_can_be_described():
    """No field lacks a readable label."""
    assert all(describe(f, None).endswith(" unknown") and f.display[0].isupper() for f in INPUT_FIELDS)


def test_explanation_columns_are_the_lake_columns_and_the_rendered_reasons(batch):
    """Batch scoring's explain columns have the lake's types and hold the factors the API renders."""
    columns, _, _, explanations = batch
    arrays = explanation_columns(explanations, columns)
    assert {name: a.type for name, a in arrays.items()} == {
        c.name: ARROW_SCHEMA.field(c.name).type for c in EXPLAIN_COLUMNS
    }
    rendered = render(explanations, columns)
    assert arrays["reason_raising_fields"].to_pylist() == [
        [f["field"] for f in r["reasons"]["raising"]] for r in rendered
    ]
    assert arrays["reason_lowering_contributions"].to_pylist() == [
        [f["contribution"] for f in r["reasons"]["lowering"]] for r in rendered
    ]
    assert arrays["driver_fit"].to_pylist() == [r["drivers"]["fit"] for r in rendered]


def test_explanation_columns_of_leads_not_explained_are_false_and_null(batch):
    """Without explanations every lead has explained=false and null reasons and drivers."""
    columns = batch[0]
    arrays = explanation_columns(None, columns)
    n = len(columns["lead_id"])
    assert arrays["explained"].to_pylist() == [False] * n
    assert all(a.null_count == n for name, a in arrays.items() if name != "explained")
