"""The oneDAL model saved in a bundle: used where it is this booster's and this oneDAL's, passed over otherwise."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from leadscore.errors import ModelBundleError
from leadscore.model.bundle import BOOSTER_FILE, default_bundle_dir, load_bundle
from leadscore.model.predictors import OneDalPredictor, XGBoostPredictor, disagreement, probe_matrix
from leadscore.model.saved import FORMAT, ONEDAL_FILE, booster_digest, read_onedal, save_onedal


def rewrite(path: Path, **changes: np.ndarray) -> None:
    """Write the .npz at `path` again with some of its arrays replaced."""
    with np.load(path, allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files}
    arrays.update(changes)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def digest_of(bundle: Path) -> str:
    """The SHA-256 of a bundle's booster file."""
    return booster_digest((bundle / BOOSTER_FILE).read_bytes())


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The model layer's log records, from INFO up."""
    caplog.set_level(logging.INFO, logger="leadscore.model")
    return caplog


def test_a_bundle_loads_its_saved_model(tiny_bundle):
    """A bundle written by training carries model.onedal.npz; loading it uses that model and reads no booster."""
    assert (tiny_bundle / ONEDAL_FILE).is_file()
    scorer = load_bundle(tiny_bundle, warm_explainer=False)
    assert scorer.predictor.startswith("onedal")
    assert scorer.predictor_model_source == "bundle"
    assert not scorer.booster_loaded


def test_the_booster_is_read_when_first_needed(tiny_bundle, tiny_scorer):
    """A scorer serving the saved model reads its booster on first use: the same booster, with one thread."""
    scorer = load_bundle(tiny_bundle, warm_explainer=False)
    assert not scorer.booster_loaded
    booster = scorer.booster
    assert scorer.booster_loaded
    assert scorer.booster is booster
    assert booster.save_raw("json") == tiny_scorer.booster.save_raw("json")
    assert json.loads(booster.save_config())["learner"]["generic_param"]["nthread"] == "1"


def test_a_booster_gone_since_load_is_a_bundle_error_when_first_needed(bundle_copy):
    """Where the booster file is removed after load, its first use raises ModelBundleError naming the file."""
    scorer = load_bundle(bundle_copy, warm_explainer=False)
    (bundle_copy / BOOSTER_FILE).unlink()
    with pytest.raises(ModelBundleError, match=r"model bundle is missing model\.ubj"):
        _ = scorer.booster


def test_a_saved_model_for_other_inputs_is_not_used(bundle_copy, captured):
    """A saved model that takes another number of inputs than the spec's is passed over, whatever its check says."""
    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.normal(size=(200, 4)), label=np.arange(200) % 5)
    other = xgb.train({"objective": "multi:softprob", "num_class": 5, "max_depth": 2}, data, num_boost_round=2)
    converted = OneDalPredictor(other)
    archive, plan = converted.archive(), converted.missing
    assert plan is not None
    probe = rng.normal(size=(20, 4)).astype(np.float32)
    rewrite(
        bundle_copy / ONEDAL_FILE,
        missing_inputs=np.array(plan.inputs, dtype=np.int64),
        missing_copies=plan.copies.astype(np.int64),
        missing_fill=plan.fill,
        archive=np.frombuffer(archive, dtype=np.uint8),
        archive_sha256=np.str_(hashlib.sha256(archive).hexdigest()),
        probe=probe,
        reference=XGBoostPredictor(other).predict(probe),
    )
    scorer = load_bundle(bundle_copy)
    assert scorer.predictor_model_source == "converted"
    assert any("the model takes 4 inputs, not 55" in r.getMessage() for r in captured.records)


def test_saved_probabilities_of_another_shape_are_passed_over(bundle_copy):
    """XGBoost's saved answers must have a row per probe input."""
    rewrite(bundle_copy / ONEDAL_FILE, reference=np.zeros((3, 5), dtype=np.float32))
    saved, reason = read_onedal(bundle_copy, digest_of(bundle_copy))
    assert saved is None
    assert reason == f"{ONEDAL_FILE} holds arrays of other types or shapes"


def test_the_saved_model_predicts_as_the_converted_one_bit_for_bit(default_scorer):
    """The model read back from the default bundle's file gives exactly the probabilities of a fresh conversion."""
    saved, reason = read_onedal(default_bundle_dir(), digest_of(default_bundle_dir()))
    assert reason is None
    assert saved is not None
    booster = default_scorer.booster
    matrix = probe_matrix(booster, rows=3000, seed=5)
    restored = OneDalPredictor.from_archive(saved.archive, 5, missing=saved.missing).predict(matrix)
    assert np.array_equal(restored, OneDalPredictor(booster).predict(matrix))
    assert disagreement(XGBoostPredictor(booster).predict(matrix), restored) is None


def test_the_packaged_bundle_is_served_from_its_saved_model(default_scorer):
    """The default bundle's file is this booster's and this oneDAL's (regenerate: `leadscore onedal <bundle dir>`)."""
    assert default_scorer.predictor_model_source == "bundle", read_onedal(
        default_bundle_dir(), digest_of(default_bundle_dir())
    )[1]


def test_a_saved_model_of_another_booster_is_passed_over(bundle_copy, captured):
    """A booster replaced after the file was written makes the file stale: the booster is converted, and that said."""
    with (bundle_copy / BOOSTER_FILE).open("ab") as booster:
        booster.write(b" ")  # other bytes, the same model: UBJSON ignores trailing whitespace
    scorer = load_bundle(bundle_copy)
    assert scorer.predictor_model_source == "converted"
    assert any("made from another booster" in r.getMessage() for r in captured.records)


def test_a_saved_model_of_another_onedal_release_is_passed_over(bundle_copy):
    """A file written by another oneDAL release is not read back: its archive format is that release's."""
    rewrite(bundle_copy / ONEDAL_FILE, daal=np.str_("2019.0.0"))
    saved, reason = read_onedal(bundle_copy, digest_of(bundle_copy))
    assert saved is None
    assert "written by oneDAL 2019.0.0" in (reason or "")
    assert load_bundle(bundle_copy).predictor_model_source == "converted"


def test_a_saved_model_in_another_format_is_passed_over(bundle_copy):
    """A file labelled with another format version is not read."""
    rewrite(bundle_copy / ONEDAL_FILE, format=np.str_("leadscore-onedal/0"))
    assert read_onedal(bundle_copy, digest_of(bundle_copy)) == (
        None,
        f"{ONEDAL_FILE} is in format 'leadscore-onedal/0', not {FORMAT!r}",
    )


def test_the_saved_model_keeps_its_missing_value_plan(bundle_copy, tiny_scorer):
    """The file holds the plan the model was built with: read back, it is the converted predictor's own."""
    saved, reason = read_onedal(bundle_copy, digest_of(bundle_copy))
    assert reason is None
    assert saved is not None
    assert saved.missing is not None
    converted = OneDalPredictor(tiny_scorer.booster).missing
    assert converted is not None
    assert saved.missing.inputs == converted.inputs
    assert np.array_equal(saved.missing.copies, converted.copies)
    assert np.array_equal(saved.missing.fill, converted.fill)


def test_a_format_1_file_is_served_with_nan_for_missing(bundle_copy, tiny_scorer, captured):
    """A file written before the missing-value plan existed serves its model (NaN for missing), and says so."""
    booster = tiny_scorer.booster
    data = OneDalPredictor(booster, missing_as_bounds=False).archive()
    path = bundle_copy / ONEDAL_FILE
    with np.load(path, allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files if not key.startswith("missing_")}
    arrays.update(
        format=np.str_("leadscore-onedal/1"),
        archive=np.frombuffer(data, dtype=np.uint8),
        archive_sha256=np.str_(hashlib.sha256(data).hexdigest()),
    )
    np.savez_compressed(path, **arrays)
    scorer = load_bundle(bundle_copy)
    assert scorer.predictor_model_source == "bundle"
    matrix = probe_matrix(booster, rows=500, seed=3)
    assert disagreement(XGBoostPredictor(booster).predict(matrix), scorer.predict_proba(matrix)) is None
    hints = [r.getMessage() for r in captured.records if r.getMessage().startswith("onedal_saved_model_nan_fed")]
    assert len(hints) == 1
    assert "`leadscore onedal <bundle dir>` rewrites it" in hints[0]


def test_a_current_file_gives_no_rewrite_hint(bundle_copy, captured):
    """A file with its missing-value plan is served without the hint to rewrite it."""
    assert load_bundle(bundle_copy).predictor_model_source == "bundle"
    assert not [r for r in captured.records if "onedal_saved_model_nan_fed" in r.getMessage()]


def test_a_saved_plan_that_is_not_one_is_passed_over(bundle_copy):
    """A plan whose fill is not infinities, one per column, makes the file unreadable: the booster is converted."""
    rewrite(bundle_copy / ONEDAL_FILE, missing_fill=np.zeros(3, dtype=np.float32))
    saved, reason = read_onedal(bundle_copy, digest_of(bundle_copy))
    assert saved is None
    assert "missing-value plan is not one" in (reason or "")
    assert load_bundle(bundle_copy).predictor_model_source == "converted"


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "crc"])
def test_an_unreadable_saved_model_is_passed_over(bundle_copy, damage):
    """A damaged file (cut short, not an archive, bytes flipped) is reported unreadable and the booster converted."""
    path = bundle_copy / ONEDAL_FILE
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "not a zip":
        data = bytearray(b"not an archive")
    else:
        with zipfile.ZipFile(path) as archive:
            member = archive.getinfo("archive.npy")
        middle = member.header_offset + 30 + len(member.filename) + member.compress_size // 2
        data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    saved, reason = read_onedal(bundle_copy, digest_of(bundle_copy))
    assert saved is None
    assert "unreadable" in (reason or "")
    scorer = load_bundle(bundle_copy)
    assert scorer.ready
    assert scorer.predictor_model_source == "converted"


def test_an_archive_that_is_not_the_recorded_one_never_reaches_onedal(bundle_copy):
    """Archive bytes without their recorded SHA-256 are passed over before oneDAL parses them (it aborts on garbage)."""
    rewrite(bundle_copy / ONEDAL_FILE, archive=np.frombuffer(b"garbage" * 100, dtype=np.uint8))
    saved, reason = read_onedal(bundle_copy, digest_of(bundle_copy))
    assert saved is None
    assert "SHA-256 is not the one recorded" in (reason or "")
    assert load_bundle(bundle_copy).predictor_model_source == "converted"


def test_a_saved_model_that_disagrees_with_xgboost_is_not_used(bundle_copy, default_scorer, captured):
    """A file that passes its labels but holds another model fails the load-time check: converted, with a warning."""
    other = OneDalPredictor(default_scorer.booster).archive()
    rewrite(
        bundle_copy / ONEDAL_FILE,
        archive=np.frombuffer(other, dtype=np.uint8),
        archive_sha256=np.str_(hashlib.sha256(other).hexdigest()),
    )  # the tiny model's probe and XGBoost answers, the packaged model's trees
    scorer = load_bundle(bundle_copy)
    assert scorer.predictor_model_source == "converted"
    assert scorer.predictor_fallback_reason is None
    warnings = [r.getMessage() for r in captured.records if r.levelno == logging.WARNING]
    assert [w.split()[0] for w in warnings] == ["onedal_saved_model_unused"]


def test_the_saved_model_is_checked_on_its_probe_inputs(bundle_copy, monkeypatch):
    """The load-time check runs on the saved probe inputs: a model that disagrees there is not used."""
    honest = OneDalPredictor.predict
    monkeypatch.setattr(OneDalPredictor, "predict", lambda self, m: honest(self, m)[:, ::-1].copy())
    scorer = load_bundle(bundle_copy)
    assert scorer.predictor_fallback_reason is not None
    assert "disagrees" in scorer.predictor_fallback_reason


def test_forced_xgboost_reads_no_saved_model(bundle_copy):
    """predictor=xgboost serves XGBoost's predictor even where the bundle has a oneDAL model."""
    scorer = load_bundle(bundle_copy, predictor="xgboost")
    assert scorer.predictor == "xgboost.inplace_predict"
    assert scorer.predictor_model_source == ""


def test_nothing_is_saved_without_onedal(bundle_copy, tiny_scorer, monkeypatch):
    """Where daal4py cannot be imported, saving returns why and leaves no file (staged or final)."""
    (bundle_copy / ONEDAL_FILE).unlink()
    monkeypatch.setitem(sys.modules, "daal4py", None)
    reason = save_onedal(bundle_copy, tiny_scorer.booster, digest_of(bundle_copy))
    assert reason is not None
    assert reason.startswith("ModuleNotFoundError")
    assert sorted(p.name for p in bundle_copy.iterdir() if "onedal" in p.name) == []


def test_saving_replaces_the_file_whole(bundle_copy, tiny_scorer):
    """Saving again writes the same bytes under the same name, through a staged file that is gone afterwards."""
    before = (bundle_copy / ONEDAL_FILE).read_bytes()
    assert save_onedal(bundle_copy, tiny_scorer.booster, digest_of(bundle_copy)) is None
    assert (bundle_copy / ONEDAL_FILE).read_bytes() == before
    assert sorted(p.name for p in bundle_copy.iterdir() if "onedal" in p.name) == [ONEDAL_FILE]


def test_a_bundle_without_the_file_still_loads(bundle_copy, captured):
    """A bundle written before saved models (no file) is converted at load, as before, and says so at info level."""
    (bundle_copy / ONEDAL_FILE).unlink()
    scorer = load_bundle(bundle_copy)
    assert scorer.predictor_model_source == "converted"
    infos = [r.getMessage() for r in captured.records if r.levelno == logging.INFO]
    assert f"onedal_saved_model_unused reason=the bundle has no {ONEDAL_FILE}" in infos
