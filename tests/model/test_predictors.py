"""The predictors: oneDAL gives XGBoost's own answers on 100k leads, padding, fallback, thread safety, and reporting."""

from __future__ import annotations

import ast
import json
import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from fastapi.testclient import TestClient

from leadscore.app import create_app
from leadscore.config import Settings
from leadscore.features.encode import encode
from leadscore.features.spec import N_MODEL_INPUTS
from leadscore.model import predictors
from leadscore.model.bundle import Scorer, load_bundle
from leadscore.model.predictors import (
    TOLERANCE,
    XGBOOST_NAME,
    MissingAsBounds,
    OneDalPredictor,
    XGBoostPredictor,
    cpu_vendor,
    default_block_rows,
    disagreement,
    padded_rows,
    probe_matrix,
    select_predictor,
)
from leadscore.training.synth import AS_OF, synthesize, table_to_columns

# Batch sizes the service sees (single leads, micro-batches, full requests) and oneDAL's three paths:
# row by row (< 26 rows of tail), a tail padded to a block, whole vector blocks.
BATCH_SIZES = (1, 8, 25, 26, 32, 47, 79, 80, 128, 500, 3)


def equality_set() -> np.ndarray:
    """100k encoded synthetic leads plus 20k copies with random missing-value patterns and edge rows."""
    table = synthesize(100_000, seed=4242)
    matrix = encode(table_to_columns(table), table.num_rows, AS_OF).matrix
    rng = np.random.default_rng(7)
    holes = matrix[rng.integers(0, matrix.shape[0], 20_000)].copy()
    rates = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0, 0.0], 2500)
    holes[rng.random(holes.shape) < rates[:, None]] = np.nan
    one_known = np.full((N_MODEL_INPUTS, N_MODEL_INPUTS), np.nan, dtype=np.float32)
    np.fill_diagonal(one_known, matrix[0])
    return np.vstack([matrix, holes, one_known])


def in_batches(predict, matrix: np.ndarray) -> np.ndarray:
    """`predict` over `matrix` in batches cycling through BATCH_SIZES."""
    parts, start, i = [], 0, 0
    while start < matrix.shape[0]:
        size = BATCH_SIZES[i % len(BATCH_SIZES)]
        parts.append(predict(matrix[start : start + size]))
        start, i = start + size, i + 1
    return np.concatenate(parts)


def test_fast_path_gives_xgboosts_answers_on_100k_leads(default_scorer):
    """On the shipped model, the fast path is within 1e-6 of XGBoost and scores alike except on near-ties."""
    assert default_scorer.predictor.startswith("onedal"), default_scorer.predictor_fallback_reason
    matrix = equality_set()
    reference = default_scorer.booster.inplace_predict(matrix, validate_features=False).astype(np.float32)
    fast = in_batches(default_scorer.predict_proba, matrix)
    whole = default_scorer.predict_proba(matrix)

    top_two = np.sort(reference, axis=1)[:, -2:]
    near_tie = (top_two[:, 1] - top_two[:, 0]) <= TOLERANCE
    for answer in (fast, whole):
        max_diff = float(np.abs(answer.astype(np.float64) - reference).max())
        changed = answer.argmax(axis=1) != reference.argmax(axis=1)
        print(
            f"rows={matrix.shape[0]} max_abs_diff={max_diff:.3g} score_changes={int(changed.sum())} "
            f"of_which_near_ties={int((changed & near_tie).sum())} near_ties_total={int(near_tie.sum())}"
        )
        assert max_diff <= TOLERANCE
        assert not (changed & ~near_tie).any()


@pytest.mark.parametrize(
    ("n", "block", "expected"),
    [
        (1, 80, 1),
        (25, 80, 25),
        (26, 80, 80),
        (79, 80, 80),
        (80, 80, 80),
        (105, 80, 105),
        (106, 80, 160),
        (500, 80, 500),
        (1, None, 1),
        (12, None, 12),
        (13, None, 32),
        (31, None, 32),
        (32, None, 32),
        (47, None, 47),
        (500, None, 500),
    ],
)
def test_padding_plan(n, block, expected):
    """A tail of 26+ rows is padded to a whole 80-row block; on Intel (None) only a call of 13-31 rows, to 32."""
    assert padded_rows(n, block) == expected


def test_cpu_vendor_read_from_cpuinfo(tmp_path):
    """The vendor comes from the cpuinfo vendor_id line."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert cpu_vendor(info) == "AuthenticAMD"


@pytest.mark.parametrize("text", [None, "processor\t: 0\n"], ids=["no-file", "no-vendor-line"])
def test_cpu_vendor_unknown(tmp_path, text):
    """Without a cpuinfo file or vendor line the vendor is unknown (empty)."""
    info = tmp_path / "cpuinfo"
    if text is not None:
        info.write_text(text)
    assert cpu_vendor(info) == ""


@pytest.mark.parametrize(("vendor", "block"), [("GenuineIntel", None), ("AuthenticAMD", 80), ("", 80)])
def test_block_rows_by_vendor(vendor, block):
    """The fixed 80-row block of oneDAL applies off Intel; on Intel it sizes blocks itself (None)."""
    assert default_block_rows(vendor) == block


@pytest.mark.parametrize("block", [80, None], ids=["padded", "unpadded"])
def test_onedal_matches_xgboost_at_every_batch_size(tiny_scorer, block):
    """Every batch size, padded or not, gives XGBoost's probabilities (tiny model, probe inputs)."""
    predictor = OneDalPredictor(tiny_scorer.booster, block_rows=block)
    matrix = probe_matrix(tiny_scorer.booster, rows=700)
    reference = XGBoostPredictor(tiny_scorer.booster).predict(matrix)
    for n in (1, 2, 12, 13, 20, 25, 26, 27, 31, 32, 79, 80, 81, 112, 160, 700):
        out = predictor.predict(matrix[:n])
        assert out.dtype == np.float32
        assert out.flags.c_contiguous
        assert disagreement(reference[:n], out) is None


def test_direct_conversion_is_daal4pys_model_bit_for_bit(default_scorer):
    """The oneDAL model read from the booster's arrays predicts exactly as daal4py's own converter's model."""
    import daal4py  # noqa: PLC0415 - the optional accelerator
    import daal4py.mb  # noqa: PLC0415 - daal4py's own converter, not loaded by the service (model/lean.py)

    booster = default_scorer.booster
    matrix = probe_matrix(booster, rows=2000)

    def predict(model: object) -> np.ndarray:
        algorithm = daal4py.gbt_classification_prediction(
            nClasses=5, fptype="float", resultsToEvaluate="computeClassProbabilities"
        )
        return np.asarray(algorithm.compute(matrix, model).probabilities)

    ours = predict(predictors.onedal_model(booster, daal4py))
    assert np.array_equal(ours, predict(daal4py.mb.convert_model(booster).daal_model_))


# One tree's splits (leaves have no left child): input 0 sends missing left, input 1 right, input 2 both ways;
# input 3 appears only in a leaf's slot and input 4 nowhere.
PLAN_TREE = {"split_indices": [0, 1, 2, 2, 3], "left_children": [1, 2, 3, 4, -1], "default_left": [1, 0, 1, 0, 1]}


def test_missing_becomes_the_infinity_on_its_splits_side():
    """Missing goes to -inf where every split sends it left, +inf where every one sends it right, -inf unsplit."""
    plan = MissingAsBounds.of([PLAN_TREE], inputs=5)
    assert plan.copies.tolist() == [2]
    assert plan.fill.tolist() == [-np.inf, np.inf, -np.inf, -np.inf, -np.inf, np.inf]
    assert plan.columns == 6


def test_an_input_split_both_ways_has_a_second_column_for_its_right_default_splits():
    """Left-default splits read the input's own column; right-default ones of a two-way input read its copy."""
    plan = MissingAsBounds.of([PLAN_TREE], inputs=5)
    assert plan.column(0, True) == 0
    assert plan.column(1, False) == 1
    assert plan.column(2, True) == 2
    assert plan.column(2, False) == 5


def test_rows_for_onedal_hold_no_nan_and_keep_present_values():
    """Missing values become their column's infinity, present ones stay, copies follow the inputs, padding is 0."""
    plan = MissingAsBounds.of([PLAN_TREE], inputs=5)
    nan = np.nan
    matrix = np.array([[nan, nan, nan, 1.5, nan], [1, 2, 3, 4, 5]], dtype=np.float32)
    rows = plan.rows(matrix, total=4)
    assert rows.dtype == np.float32
    assert rows.flags.c_contiguous
    assert rows.tolist() == [
        [-np.inf, np.inf, -np.inf, 1.5, -np.inf, np.inf],
        [1, 2, 3, 4, 5, 3],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]


def test_missing_as_infinities_gives_the_nan_models_answers_bit_for_bit(default_scorer):
    """On the shipped model, the served predictor (no NaN reaches oneDAL) equals a NaN-fed model exactly."""
    booster = default_scorer.booster
    matrix = probe_matrix(booster, rows=2000, seed=9)  # a quarter of the inputs missing, split values hit
    served = OneDalPredictor(booster, block_rows=default_block_rows(cpu_vendor()))
    assert served.missing is not None
    assert served.missing.columns == N_MODEL_INPUTS + served.missing.copies.size
    nan_fed = OneDalPredictor(booster, block_rows=served.block_rows, missing_as_bounds=False)
    assert nan_fed.missing is None
    for n in (1, 15, 16, 80, 500, 2000):
        assert np.array_equal(served.predict(matrix[:n]), nan_fed.predict(matrix[:n]))


def test_an_archive_whose_plan_reads_other_columns_is_refused(tiny_scorer):
    """A saved model and a missing-value plan of another column count do not make a predictor (ValueError)."""
    predictor = OneDalPredictor(tiny_scorer.booster)
    assert predictor.missing is not None
    other = MissingAsBounds(predictor.missing.inputs, np.array([], dtype=np.intp), predictor.missing.fill[:3])
    with pytest.raises(ValueError, match="missing-value plan"):
        OneDalPredictor.from_archive(predictor.archive(), 5, missing=other)


def test_empty_batch(tiny_scorer):
    """Zero rows give a (0, 5) answer, not an error."""
    predictor = OneDalPredictor(tiny_scorer.booster)
    assert predictor.predict(np.empty((0, N_MODEL_INPUTS), dtype=np.float32)).shape == (0, 5)


def test_predictions_are_thread_safe(tiny_scorer):
    """Threads predicting different batch sizes at once each get XGBoost's answers."""
    predictor = OneDalPredictor(tiny_scorer.booster)
    matrix = probe_matrix(tiny_scorer.booster, rows=600)
    reference = XGBoostPredictor(tiny_scorer.booster).predict(matrix)
    problems: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(100):
            start, n = int(rng.integers(0, 400)), int(rng.integers(1, 200))
            problem = disagreement(reference[start : start + n], predictor.predict(matrix[start : start + n]))
            if problem:
                problems.append(problem)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []


def test_probe_matrix_hits_split_values_and_missing(tiny_scorer):
    """Probe inputs hold exact split values, their float neighbours on both sides, and missing values."""
    booster = tiny_scorer.booster
    matrix = probe_matrix(booster, rows=400)
    tree = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"][0]
    feature, value = tree["split_indices"][0], np.float32(tree["split_conditions"][0])
    column = matrix[:, feature]
    assert (column == value).any()
    assert (column == np.nextafter(value, np.float32(-np.inf))).any()
    assert (column == np.nextafter(value, np.float32(np.inf))).any()
    assert np.isnan(matrix).any()
    assert np.isnan(matrix[0]).all()


def test_disagreement_accepts_near_ties():
    """A different top class is accepted only where the reference's top two are within the tolerance."""
    reference = np.array([[0.4, 0.4000005, 0.2], [0.5, 0.3, 0.2]], dtype=np.float32)
    swapped = np.array([[0.4000005, 0.4, 0.2], [0.5, 0.3, 0.2]], dtype=np.float32)
    assert disagreement(reference, swapped) is None


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (np.array([[0.2, 0.8]], dtype=np.float32), "probabilities differ"),
        (np.array([[np.nan, 0.4]], dtype=np.float32), "probabilities differ"),
        (np.array([[0.6, 0.4, 0.0]], dtype=np.float32), "shape"),
    ],
    ids=["far", "nan", "shape"],
)
def test_disagreement_reports_problems(candidate, message):
    """Probabilities off by more than the tolerance, NaN, or a wrong shape are reported."""
    reference = np.array([[0.6, 0.4]], dtype=np.float32)
    assert message in (disagreement(reference, candidate) or "")


def test_disagreement_reports_changed_scores():
    """A different top class is reported where the reference's winner leads by more than the tolerance."""
    reference = np.array([[0.5000008, 0.4999992]], dtype=np.float32)
    candidate = np.array([[0.4999999, 0.5000001]], dtype=np.float32)
    assert disagreement(reference, candidate) == "1 rows get another score"


def test_model_package_imports_nothing_above_it():
    """model/ logs with the standard library and imports neither telemetry, scoring, api nor the app."""
    package = Path(predictors.__file__).parent
    above = ("leadscore.telemetry", "leadscore.scoring", "leadscore.api", "leadscore.app", "leadscore.lake")
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not [m for m in imported if m.startswith(above)], source.name


def test_forced_xgboost(tiny_scorer):
    """Setting predictor=xgboost selects XGBoost's predictor, and that is not a fallback."""
    selection = select_predictor(tiny_scorer.booster, "xgboost")
    assert selection.predictor.name == XGBOOST_NAME
    assert selection.fallback_reason is None


@pytest.fixture
def captured(caplog) -> pytest.LogCaptureFixture:
    """The predictors module's log records (standard library logging), from INFO up."""
    caplog.set_level(logging.INFO, logger="leadscore.model.predictors")
    return caplog


def assert_fell_back(selection, captured, reason_part: str) -> None:
    """XGBoost was chosen, the reason says why, and a WARNING line says the same."""
    assert selection.predictor.name == XGBOOST_NAME
    assert reason_part in (selection.fallback_reason or "")
    warnings = [r for r in captured.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split()[0] for r in warnings] == ["predictor_fallback"]
    assert warnings[0].reason == selection.fallback_reason
    assert selection.fallback_reason in warnings[0].getMessage()


def test_fallback_when_daal4py_is_missing(tiny_scorer, monkeypatch, captured):
    """Without daal4py the service keeps XGBoost's predictor and says it could not import it."""
    monkeypatch.setitem(sys.modules, "daal4py", None)
    selection = select_predictor(tiny_scorer.booster)
    assert_fell_back(selection, captured, "could not be built: ModuleNotFoundError")


def test_fallback_when_conversion_fails(captured):
    """A booster oneDAL cannot represent (linear) falls back to XGBoost with the converter's reason."""
    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.normal(size=(60, 4)), label=np.arange(60) % 5)
    params = {"objective": "multi:softprob", "num_class": 5, "booster": "gblinear"}
    selection = select_predictor(xgb.train(params, data, num_boost_round=2))
    assert_fell_back(selection, captured, "could not be built: TypeError")


def test_fallback_for_other_objectives(captured):
    """A booster that is not multi:softprob is served by XGBoost (probabilities would have another shape)."""
    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.normal(size=(60, 4)), label=np.arange(60) % 2)
    selection = select_predictor(xgb.train({"objective": "binary:logistic"}, data, num_boost_round=2))
    assert_fell_back(selection, captured, "multi:softprob boosters only")


def test_fallback_when_self_check_fails(tiny_scorer, monkeypatch, captured):
    """A fast path that disagrees with XGBoost on the load-time check is not used."""
    honest = OneDalPredictor.predict
    monkeypatch.setattr(OneDalPredictor, "predict", lambda self, m: honest(self, m)[:, ::-1].copy())
    selection = select_predictor(tiny_scorer.booster)
    assert_fell_back(selection, captured, "disagrees with XGBoost on the load-time self-check")


def test_selected_fast_path_is_logged(tiny_scorer, captured):
    """Choosing oneDAL is logged at info level with its name."""
    selection = select_predictor(tiny_scorer.booster)
    assert selection.fallback_reason is None
    assert [(r.levelname, r.predictor) for r in captured.records] == [("INFO", selection.predictor.name)]


def test_forced_xgboost_log_does_not_claim_a_setting(tiny_scorer, captured):
    """Asking for XGBoost's predictor logs that it was requested, not that a setting forced it."""
    select_predictor(tiny_scorer.booster, "xgboost")
    assert [r.reason for r in captured.records] == ["predictor=xgboost requested: no fast path tried"]
    assert "setting" not in captured.records[0].getMessage()


def test_warm_up_goes_through_the_selected_predictor(tiny_scorer):
    """Warm-up predicts with the predictor the scorer will serve with."""
    scorer = Scorer(tiny_scorer.booster, tiny_scorer.manifest)
    seen: list[int] = []
    real = scorer._predictor

    class Spy:
        name = real.name

        def predict(self, matrix):
            seen.append(matrix.shape[0])
            return real.predict(matrix)

    scorer._predictor = Spy()
    scorer.warm_up()
    assert scorer.ready
    assert seen == [1]


def test_scorer_reports_its_predictor(tiny_bundle):
    """A loaded scorer names the predictor in use; forcing XGBoost is honoured."""
    assert load_bundle(tiny_bundle).predictor.startswith("onedal")
    forced = load_bundle(tiny_bundle, predictor="xgboost")
    assert forced.predictor == XGBOOST_NAME
    assert forced.predictor_fallback_reason is None


def test_setting_reaches_model_endpoint(tmp_path, tiny_bundle, monkeypatch):
    """LEADSCORE_PREDICTOR=xgboost reaches the scorer and GET /api/v1/model reports predictor and reason."""
    monkeypatch.setenv("LEADSCORE_PREDICTOR", "xgboost")
    settings = Settings(model_dir=tiny_bundle, spool_dir=tmp_path / "spool", lake_uri=str(tmp_path / "lake"))
    with TestClient(create_app(settings)) as client:
        body = client.get("/api/v1/model").json()
    assert body["predictor"] == XGBOOST_NAME
    assert body["predictor_fallback_reason"] is None
    assert body["predictor_model"] is None


def test_model_endpoint_says_where_the_onedal_model_came_from(tmp_path, tiny_bundle):
    """GET /api/v1/model reports `predictor_model: bundle` for a bundle served from its saved oneDAL model."""
    settings = Settings(model_dir=tiny_bundle, spool_dir=tmp_path / "spool", lake_uri=str(tmp_path / "lake"))
    with TestClient(create_app(settings)) as client:
        body = client.get("/api/v1/model").json()
    assert body["predictor"].startswith("onedal")
    assert body["predictor_model"] == "bundle"


def test_model_endpoint_reports_a_fallback(tmp_path, tiny_bundle, monkeypatch):
    """When the fast path cannot be built, GET /api/v1/model says XGBoost serves and why."""
    monkeypatch.setitem(sys.modules, "daal4py", None)
    settings = Settings(model_dir=tiny_bundle, spool_dir=tmp_path / "spool", lake_uri=str(tmp_path / "lake"))
    with TestClient(create_app(settings)) as client:
        body = client.get("/api/v1/model").json()
    assert body["predictor"] == XGBOOST_NAME
    assert "could not be built: ModuleNotFoundError" in body["predictor_fallback_reason"]


def test_unknown_predictor_setting_is_refused(monkeypatch):
    """A predictor setting other than auto or xgboost is a configuration error."""
    monkeypatch.setenv("LEADSCORE_PREDICTOR", "onnx")
    with pytest.raises(ValueError, match="predictor"):
        Settings()
