"""The model bundle: loading, every way a bundle can be broken, warm-up, and the shipped default bundle."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xgboost as xgb

from leadscore.errors import ModelBundleError
from leadscore.features.spec import ENGINEERED_NAMES, INPUT_FIELDS, N_MODEL_INPUTS, SPEC
from leadscore.model.bundle import (
    BOOSTER_FILE,
    CATEGORY_MAP_FILE,
    MANIFEST_FILE,
    Manifest,
    Scorer,
    check_bundle,
    default_bundle_dir,
    load_bundle,
)
from leadscore.model.predictors import XGBoostPredictor
from leadscore.model.saved import ONEDAL_FILE


def edit_manifest(bundle, **changes):
    """Rewrite fields of a bundle's manifest in place."""
    path = bundle / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_load_gives_a_ready_scorer(tiny_bundle):
    """A good bundle loads, is warmed up, and reports its version."""
    scorer = load_bundle(tiny_bundle)
    assert scorer.ready
    assert scorer.version == "test-tiny"
    assert scorer.manifest.feature_names == ENGINEERED_NAMES


def test_predictions_are_probabilities(tiny_scorer):
    """predict_proba returns one row of 5 probabilities summing to 1 per lead, missing values allowed."""
    matrix = np.random.default_rng(0).normal(size=(7, N_MODEL_INPUTS)).astype(np.float32)
    matrix[0, :] = np.nan
    probs = tiny_scorer.predict_proba(matrix)
    assert probs.shape == (7, 5)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_manifest_round_trips_through_json(tiny_scorer):
    """A manifest written as JSON reads back equal."""
    assert Manifest.from_json(tiny_scorer.manifest.to_json()) == tiny_scorer.manifest


def test_missing_directory(tmp_path):
    """A bundle directory that does not exist is reported as such."""
    with pytest.raises(ModelBundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_missing_manifest(bundle_copy):
    """A bundle without manifest.json names the missing file."""
    (bundle_copy / MANIFEST_FILE).unlink()
    with pytest.raises(ModelBundleError, match=f"missing {MANIFEST_FILE}"):
        load_bundle(bundle_copy)


def test_missing_booster(bundle_copy):
    """A bundle without model.ubj names the missing file."""
    (bundle_copy / BOOSTER_FILE).unlink()
    with pytest.raises(ModelBundleError, match=f"missing {BOOSTER_FILE}"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("garbage", [b"", b"not a model" * 50, b"{\x00\x01"], ids=["empty", "text", "bytes"])
def test_corrupt_booster(bundle_copy, garbage):
    """Booster bytes that are not a model are reported as a corrupt booster."""
    (bundle_copy / BOOSTER_FILE).write_bytes(garbage)
    with pytest.raises(ModelBundleError, match=f"booster {BOOSTER_FILE} is corrupt"):
        load_bundle(bundle_copy)


def test_truncated_booster(bundle_copy):
    """A booster cut short (interrupted copy) is reported as corrupt."""
    path = bundle_copy / BOOSTER_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelBundleError, match="corrupt"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '{"version": "x"}', "null"],
    ids=["not-json", "not-an-object", "missing-keys", "null"],
)
def test_malformed_manifest(bundle_copy, text):
    """A manifest that is not JSON or lacks required keys is reported as malformed."""
    (bundle_copy / MANIFEST_FILE).write_text(text)
    with pytest.raises(ModelBundleError, match="manifest is malformed"):
        load_bundle(bundle_copy)


def test_unsupported_format_version(bundle_copy):
    """A manifest of another bundle format is refused."""
    edit_manifest(bundle_copy, format_version=99)
    with pytest.raises(ModelBundleError, match="bundle format 99 is not supported"):
        load_bundle(bundle_copy)


def test_feature_spec_fingerprint_mismatch(bundle_copy):
    """A bundle trained for another feature spec is refused, with both fingerprints and the remedy."""
    edit_manifest(bundle_copy, feature_spec_fingerprint="sha256:" + "0" * 64)
    with pytest.raises(ModelBundleError, match="different feature spec") as caught:
        load_bundle(bundle_copy)
    assert SPEC.fingerprint() in caught.value.message
    assert "leadscore train" in caught.value.message


def test_feature_name_mismatch(bundle_copy):
    """A bundle whose column names differ from the spec's is refused even if the fingerprint matches."""
    names = list(ENGINEERED_NAMES)
    names[0], names[1] = names[1], names[0]
    edit_manifest(bundle_copy, feature_names=names)
    with pytest.raises(ModelBundleError, match="feature names do not match"):
        load_bundle(bundle_copy)


def test_booster_with_other_input_count(bundle_copy):
    """A booster trained on a different number of inputs is refused."""
    data = xgb.DMatrix(np.random.default_rng(0).normal(size=(50, 3)), label=np.arange(50) % 5)
    xgb.train({"objective": "multi:softprob", "num_class": 5}, data, num_boost_round=1).save_model(
        str(bundle_copy / BOOSTER_FILE)
    )
    with pytest.raises(ModelBundleError, match=f"booster expects 3 inputs, the spec has {N_MODEL_INPUTS}"):
        load_bundle(bundle_copy)


def test_warm_up_failure_in_xgboost_is_a_bundle_error(tiny_bundle, monkeypatch):
    """An XGBoost error during the warm-up prediction is reported as a bundle error, not a crash."""

    def fail(_self):
        raise xgb.core.XGBoostError("predictor exploded")

    monkeypatch.setattr(Scorer, "warm_up", fail)
    with pytest.raises(ModelBundleError, match="warm-up prediction failed: predictor exploded"):
        load_bundle(tiny_bundle)


def test_warm_up_sets_ready(tiny_scorer):
    """A fresh scorer is not ready; a successful warm-up prediction makes it ready."""
    scorer = Scorer(tiny_scorer.booster, tiny_scorer.manifest)
    assert not scorer.ready
    scorer.warm_up()
    assert scorer.ready


class _BrokenScorer(Scorer):
    """A scorer whose predictions are fixed, to drive warm-up's checks."""

    def __init__(self, base: Scorer, output: np.ndarray) -> None:
        super().__init__(base.booster, base.manifest)
        self.output = output

    def predict_proba(self, _matrix):
        return self.output


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (np.full((1, 5), np.nan, dtype=np.float32), "non-finite"),
        (np.full((1, 5), 0.5, dtype=np.float32), "do not sum to 1"),
        (np.full((1, 3), 1 / 3, dtype=np.float32), r"shape \(1, 3\), expected \(1, 5\)"),
    ],
    ids=["nan", "not-normalised", "wrong-shape"],
)
def test_warm_up_refuses_insane_output(tiny_scorer, output, message):
    """Warm-up fails, leaving the scorer not ready, when the model's output is not 5 probabilities."""
    scorer = _BrokenScorer(tiny_scorer, output)
    with pytest.raises(ModelBundleError, match=message):
        scorer.warm_up()
    assert not scorer.ready


def test_default_bundle_loads_for_this_spec(default_scorer):
    """The shipped bundle matches the current feature spec and is ready."""
    assert default_scorer.ready
    assert default_scorer.manifest.feature_spec_fingerprint == SPEC.fingerprint()


def test_default_bundle_has_production_capacity(default_scorer):
    """The shipped booster has >= 200 rounds x 5 classes (>= 1,000 trees) of depth 6, counted from the booster."""
    booster = default_scorer.booster
    model = json.loads(booster.save_raw("json"))
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    assert int(model["learner"]["learner_model_param"]["num_class"]) == 5
    assert booster.num_boosted_rounds() >= 200
    assert len(trees) >= 1000

    def depth(tree: dict) -> int:
        left, right = tree["left_children"], tree["right_children"]
        deepest, stack = 0, [(0, 0)]
        while stack:
            node, level = stack.pop()
            deepest = max(deepest, level)
            if left[node] != -1:
                stack += [(left[node], level + 1), (right[node], level + 1)]
        return deepest

    assert max(depth(t) for t in trees) == 6
    config = json.loads(booster.save_config())
    assert int(config["learner"]["gradient_booster"]["tree_train_param"]["max_depth"]) == 6


def test_default_bundle_was_trained_on_100k_rows(default_scorer):
    """The shipped manifest says it was trained on at least 100k rows."""
    manifest = default_scorer.manifest
    assert manifest.training_data["rows"] >= 100_000
    assert manifest.metrics["rows"] + manifest.metrics["train_rows"] == manifest.training_data["rows"]
    assert manifest.num_boost_round >= 200
    assert manifest.params["max_depth"] == 6


def test_default_bundle_manifest_has_evaluation_metrics(default_scorer):
    """The shipped manifest carries held-out log loss, accuracy, macro AUC, confusion matrix and calibration."""
    metrics = default_scorer.manifest.metrics
    assert 0.0 < metrics["log_loss"] < np.log(5)
    assert 0.2 < metrics["accuracy"] <= 1.0
    assert 0.5 < metrics["macro_auc"] <= 1.0
    confusion = np.array(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    assert confusion.shape == (5, 5)
    assert confusion.sum() == metrics["rows"]
    assert sum(b["count"] for b in metrics["calibration"]["bins"]) == metrics["rows"]
    assert "expected_calibration_error" in metrics["calibration"]


def test_default_bundle_dir_is_inside_the_package():
    """The default bundle ships inside the installed package."""
    assert default_bundle_dir().is_dir()
    assert default_bundle_dir().parent.name == "model"


def test_the_default_bundle_keeps_the_packaged_category_map(default_scorer):
    """The shipped bundle has its category map file, and its scorer reads CRM forms through it."""
    assert (default_bundle_dir() / CATEGORY_MAP_FILE).is_file()
    assert default_scorer.categories.code("geography", "north_america") == 0


def test_a_bundle_without_a_map_is_served_with_the_packaged_one(bundle_copy):
    """A bundle written before category maps existed gets the packaged default map."""
    (bundle_copy / CATEGORY_MAP_FILE).unlink(missing_ok=True)
    assert load_bundle(bundle_copy).categories.code("company_size", "11-50") == 1


def test_a_configured_map_extends_the_bundle_map(bundle_copy, tmp_path):
    """A category map file given at load adds its forms to the bundle's; the bundle's stay."""
    extra = tmp_path / "crm.yaml"
    extra.write_text("industry:\n  widgets: Manufacturing\n")
    categories = load_bundle(bundle_copy, category_map=extra).categories
    assert categories.code("industry", "Widgets") == 4
    assert categories.code("company_size", "11-50") == 1


def test_a_broken_configured_map_is_a_bundle_error(bundle_copy, tmp_path):
    """A configured map that cannot be used stops the load with a message naming the file."""
    extra = tmp_path / "crm.json"
    extra.write_text('{"industry": {"widgets": "Gadgets"}}')
    with pytest.raises(ModelBundleError, match=r"crm\.json: category map: industry 'widgets' maps to 'Gadgets'"):
        load_bundle(bundle_copy, category_map=extra)


def test_check_bundle_checks_without_selecting_a_predictor(tiny_bundle, caplog):
    """check_bundle gives the manifest of a sound bundle and logs no predictor choice (it serves nothing)."""
    caplog.set_level(logging.INFO, logger="leadscore.model.predictors")
    assert check_bundle(tiny_bundle).version == "test-tiny"
    assert caplog.records == []


def test_check_bundle_with_a_saved_model_never_imports_xgboost(tiny_bundle):
    """A bundle with a saved oneDAL model is checked without XGBoost (`serve` with one worker is its worker)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import json, sys
            from pathlib import Path
            from leadscore.model.bundle import check_bundle
            version = check_bundle(Path({str(tiny_bundle)!r})).version
            print(json.dumps({{"version": version, "xgboost": "xgboost" in sys.modules}}))
            """)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == {"version": "test-tiny", "xgboost": False}


def test_check_bundle_warms_up_a_bundle_without_a_usable_saved_model(bundle_copy, monkeypatch):
    """Without a usable saved model, check_bundle reads the booster and runs XGBoost's warm-up prediction."""
    (bundle_copy / ONEDAL_FILE).unlink()
    seen: list[tuple[int, int]] = []
    honest = XGBoostPredictor.predict
    monkeypatch.setattr(XGBoostPredictor, "predict", lambda self, m: seen.append(m.shape) or honest(self, m))
    assert check_bundle(bundle_copy).version == "test-tiny"
    assert seen == [(1, len(ENGINEERED_NAMES))]


def test_check_bundle_refuses_what_load_bundle_refuses(bundle_copy):
    """A broken bundle fails check_bundle with load_bundle's message."""
    (bundle_copy / BOOSTER_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelBundleError, match="is corrupt"):
        check_bundle(bundle_copy)


def test_manifest_without_importance_still_reads(tiny_scorer):
    """A manifest written before global importance was recorded loads, with an empty importance."""
    data = json.loads(tiny_scorer.manifest.to_json())
    del data["importance"]
    assert Manifest.from_json(json.dumps(data)).importance == {}


def test_packaged_bundle_records_global_importance(default_scorer):
    """The shipped manifest has the mean |SHAP| of every input field, largest first."""
    importance = default_scorer.manifest.importance
    assert set(importance) == {f.name for f in INPUT_FIELDS}
    assert list(importance.values()) == sorted(importance.values(), reverse=True)


def test_a_scorer_loaded_without_its_explainer_is_ready(tiny_bundle):
    """`warm_explainer=False` gives a ready scorer whose explainer is not built yet."""
    scorer = load_bundle(tiny_bundle, warm_explainer=False)
    assert scorer.ready
    assert not scorer.explainer_built


def test_the_first_explanation_builds_the_explainer_the_warm_one_would_be(tiny_bundle, tiny_scorer):
    """Built at first use, the explainer gives the same contributions as one built at warm-up."""
    scorer = load_bundle(tiny_bundle, warm_explainer=False)
    matrix = np.random.default_rng(1).normal(size=(9, N_MODEL_INPUTS)).astype(np.float32)
    classes = np.arange(9) % 5
    assert np.array_equal(
        scorer.explainer.contributions(matrix, classes), tiny_scorer.explainer.contributions(matrix, classes)
    )
    assert scorer.explainer_built
