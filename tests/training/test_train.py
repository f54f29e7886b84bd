"""Training a bundle: what it writes, and what it refuses."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features.picklists import CategoryMap
from leadscore.features.spec import ENGINEERED_NAMES, SPEC
from leadscore.model.bundle import (
    BOOSTER_FILE,
    CATEGORY_MAP_FILE,
    MANIFEST_FILE,
    REFERENCE_FILE,
    Manifest,
    load_bundle,
    load_reference,
)
from leadscore.model.saved import ONEDAL_FILE
from leadscore.training.contract import OUTCOME
from leadscore.training.synth import synthesize
from leadscore.training.train import TRAINING_REPORT_FILE, TrainConfig, train_bundle

TINY = TrainConfig(num_boost_round=3, max_depth=2, version="unit")


def test_train_bundle_writes_a_loadable_bundle(tmp_path):
    """train_bundle writes booster, oneDAL model, manifest, map and reference bins; it loads from its oneDAL model."""
    manifest = train_bundle(synthesize(600, seed=2), tmp_path / "b", TINY, source="synth.parquet")
    expected = {BOOSTER_FILE, ONEDAL_FILE, MANIFEST_FILE, CATEGORY_MAP_FILE, REFERENCE_FILE, TRAINING_REPORT_FILE}
    assert {p.name for p in (tmp_path / "b").iterdir()} == expected
    scorer = load_bundle(tmp_path / "b")
    assert scorer.ready
    assert scorer.predictor_model_source == "bundle"
    assert scorer.version == manifest.version == "unit"


def test_manifest_records_metrics_and_provenance(tiny_bundle):
    """The manifest holds held-out metrics, the spec fingerprint, parameters and the training data summary."""
    manifest = Manifest.from_json((tiny_bundle / MANIFEST_FILE).read_text())
    for key in ("log_loss", "accuracy", "macro_auc", "auc_per_score", "confusion_matrix", "calibration"):
        assert key in manifest.metrics, key
    assert manifest.metrics["rows"] + manifest.metrics["train_rows"] == manifest.training_data["rows"] == 3000
    assert manifest.metrics["rows"] == 600  # the 20 % held out
    assert manifest.feature_spec_fingerprint == SPEC.fingerprint()
    assert manifest.feature_names == ENGINEERED_NAMES
    assert manifest.params["objective"] == "multi:softprob"
    assert manifest.params["num_class"] == 5
    assert manifest.num_boost_round == 5
    assert sum(manifest.training_data["outcome_distribution"].values()) == 3000
    json.loads((tiny_bundle / MANIFEST_FILE).read_text())


def test_default_version_is_date_and_hash(tmp_path):
    """Without a version, the bundle is named by training date and booster hash."""
    config = TrainConfig(num_boost_round=2, max_depth=2)
    manifest = train_bundle(synthesize(300, seed=2), tmp_path / "b", config)
    date, digest = manifest.version.split("-")
    assert len(date.split(".")) == 3
    assert len(digest) == 8


def test_missing_outcome_column_is_refused(tmp_path):
    """Data without an `outcome` column fails with a message naming it."""
    table = synthesize(100, seed=2).drop_columns([OUTCOME])
    with pytest.raises(LeadscoreError, match="no `outcome` column"):
        train_bundle(table, tmp_path / "b", TINY)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("bad", [0, 6, None])
def test_outcome_outside_1_to_5_is_refused(tmp_path, bad):
    """An outcome outside 1..5 (or missing) in any row fails the training."""
    table = synthesize(100, seed=2)
    outcome = table.column(OUTCOME).to_pylist()
    outcome[17] = bad
    table = table.set_column(table.column_names.index(OUTCOME), OUTCOME, pa.array(outcome, pa.int64()))
    with pytest.raises(LeadscoreError, match=r"row 18, outcome: must be an integer score 1\.\.5"):
        train_bundle(table, tmp_path / "b", TINY)


def test_text_outcome_is_refused(tmp_path):
    """An outcome of text (e.g. "hot") fails naming the row and the value, not with a cast error."""
    table = synthesize(50, seed=2)
    table = table.set_column(table.column_names.index(OUTCOME), OUTCOME, pa.array(["hot"] * 50))
    with pytest.raises(LeadscoreError, match=r"row 1, outcome: must be an integer score 1\.\.5, got 'hot'"):
        train_bundle(table, tmp_path / "b", TINY)


def test_the_bundle_keeps_the_category_map_it_was_trained_with(tmp_path):
    """The map given to training is written into the bundle and the loaded scorer encodes with it."""
    categories = CategoryMap({"industry": {"widgets": "Manufacturing"}})
    train_bundle(synthesize(300, seed=2), tmp_path / "b", TINY, categories=categories)
    scorer = load_bundle(tmp_path / "b")
    assert scorer.categories.synonyms == {"industry": {"widgets": "Manufacturing"}}
    assert scorer.categories.code("industry", "WIDGETS") == scorer.categories.code("industry", "Manufacturing")


def test_training_uses_the_packaged_crm_map_by_default(tmp_path):
    """Without a map, training reads CRM forms (`11-50`) through the packaged default and writes it."""
    train_bundle(synthesize(300, seed=2), tmp_path / "b", TINY)
    assert load_bundle(tmp_path / "b").categories.code("company_size", "11-50") == 1  # Small


def test_training_records_global_importance(tiny_bundle):
    """A new bundle's manifest has each input field's mean |SHAP| over the held-out split, largest first."""
    manifest = Manifest.from_json((tiny_bundle / MANIFEST_FILE).read_text())
    values = list(manifest.importance.values())
    assert len(values) == len(SPEC.inputs)
    assert values == sorted(values, reverse=True)
    assert values[0] > 0


def test_reference_bins_describe_the_training_data(tmp_path):
    """The bundle's reference holds decile shares of each numeric input and value shares of each category."""
    table = synthesize(1000, seed=3)
    train_bundle(table, tmp_path / "b", TINY)
    reference = load_reference(tmp_path / "b")
    assert reference is not None
    email = reference["numeric"]["email_engagement_score"]
    assert len(email["edges"]) == 9
    assert sum(email["shares"]) + email["missing"] == pytest.approx(1.0)
    assert email["missing"] == pytest.approx(table["email_engagement_score"].null_count / 1000)
    sizes = reference["categorical"]["company_size"]
    given = table["company_size"].drop_null().to_pylist()
    assert sizes["Enterprise"] == pytest.approx(given.count("Enterprise") / 1000)
    assert sizes["(unknown)"] == 0.0


def test_training_report_has_the_confusion_matrix_importance_and_learning_curve(tiny_bundle):
    """The bundle's training report is one HTML file with its three charts inline and nothing fetched."""
    page = (tiny_bundle / TRAINING_REPORT_FILE).read_text(encoding="utf-8")
    for title in ("Confusion matrix", "Feature importance", "Learning curve"):
        assert f'aria-label="{title}"' in page
    assert page.count("<svg") == 3
    for fetching in ("<script", "<link", 'src="http', 'href="http', "url(http"):
        assert fetching not in page
