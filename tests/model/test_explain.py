"""TreeSHAP kernel: XGBoost's own contributions for the predicted class, on the packaged model and a tiny one."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from leadscore.features.encode import encode
from leadscore.features.spec import N_MODEL_INPUTS
from leadscore.model.bundle import BOOSTER_FILE, bundle_category_map, default_bundle_dir
from leadscore.model.explain import TreeExplainer
from leadscore.model.predictors import probe_matrix
from leadscore.training.synth import AS_OF, synthesize, table_to_columns

TOLERANCE = 1e-5
UNKNOWN = {"industry": "Quantum Widgets", "company_size": "Galactic", "seniority_level": "Wizard", "geography": "Moon"}


def load_booster(directory: Path) -> xgb.Booster:
    """A private copy of a bundle's booster (its thread count is this test's own)."""
    booster = xgb.Booster()
    booster.load_model(str(directory / BOOSTER_FILE))
    booster.set_param({"nthread": 2})
    return booster


def exactness_set(directory: Path, booster: xgb.Booster, leads: int, seed: int) -> np.ndarray:
    """Synthetic leads, some with unknown category values, copies with holes, one-input rows and split probes."""
    table = synthesize(leads, seed=seed)
    columns = table_to_columns(table)
    rng = np.random.default_rng(seed)
    for name, unknown in UNKNOWN.items():
        values = list(columns[name])
        for i in np.flatnonzero(rng.random(len(values)) < 0.05).tolist():
            values[i] = unknown
        columns[name] = values
    matrix = encode(columns, table.num_rows, AS_OF, categories=bundle_category_map(directory)).matrix
    holes = matrix[rng.integers(0, matrix.shape[0], leads // 5)].copy()
    holes[rng.random(holes.shape) < rng.choice([0.1, 0.5, 0.9, 1.0], holes.shape[0])[:, None]] = np.nan
    one_known = np.full((N_MODEL_INPUTS, N_MODEL_INPUTS), np.nan, dtype=np.float32)
    np.fill_diagonal(one_known, matrix[0])
    return np.vstack([matrix, holes, one_known, probe_matrix(booster)])


def reference(booster: xgb.Booster, matrix: np.ndarray, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """XGBoost's contributions of the most probable class per row, and that class, computed in batches."""
    parts, classes = [], []
    for start in range(0, matrix.shape[0], batch):
        rows = xgb.DMatrix(matrix[start : start + batch], feature_names=booster.feature_names)
        contribs = booster.predict(rows, pred_contribs=True)
        best = booster.predict(rows).argmax(axis=1)
        parts.append(contribs[np.arange(best.shape[0]), best])
        classes.append(best)
    return np.concatenate(parts), np.concatenate(classes)


def test_equals_xgboost_on_the_packaged_model():
    """Every contribution and the bias equal pred_contribs within 1e-5 for the predicted class, on 2,800+ rows.

    XGBoost's reference computes every class's contributions at ~9 ms a row (2 threads): 2,000 leads, their holes,
    one-input rows and a probe of every split take it ~25 s here, where 8,000 leads took 86-146 s of CI.
    """
    directory = default_bundle_dir()
    booster = load_booster(directory)
    matrix = exactness_set(directory, booster, 2000, seed=13)
    assert matrix.shape[0] >= 2_800
    assert np.isnan(matrix).any(axis=1).mean() > 0.2  # missing values and unknown categories are well represented
    expected, classes = reference(booster, matrix)
    got = TreeExplainer.from_booster(booster).contributions(matrix, classes)
    worst = np.abs(got - expected).max(axis=1)
    assert worst.max() <= TOLERANCE, f"{int((worst > TOLERANCE).sum())} rows differ, worst row {int(worst.argmax())}"


def test_equals_xgboost_for_every_class_on_the_tiny_model(tiny_bundle):
    """On the fixtures' tiny model, each of the five classes' contributions equal XGBoost's."""
    booster = load_booster(tiny_bundle)
    matrix = exactness_set(tiny_bundle, booster, 500, seed=3)
    explainer = TreeExplainer.from_booster(booster)
    contribs = booster.predict(xgb.DMatrix(matrix, feature_names=booster.feature_names), pred_contribs=True)
    for klass in range(5):
        got = explainer.contributions(matrix, np.full(matrix.shape[0], klass))
        assert np.abs(got - contribs[:, klass]).max() <= TOLERANCE


def test_rows_add_up_to_the_margin(tiny_bundle):
    """Contributions plus bias add up to the booster's margin of the explained class."""
    booster = load_booster(tiny_bundle)
    matrix = probe_matrix(booster, rows=200)
    classes = np.arange(matrix.shape[0]) % 5
    margin = booster.inplace_predict(matrix, predict_type="margin").reshape(-1, 5)[np.arange(200), classes]
    got = TreeExplainer.from_booster(booster).contributions(matrix, classes)
    assert np.abs(got.sum(axis=1) - margin).max() <= TOLERANCE


def test_no_rows():
    """An empty batch gives an empty answer of the right width."""
    explainer = TreeExplainer.from_booster(load_booster(default_bundle_dir()))
    got = explainer.contributions(np.empty((0, N_MODEL_INPUTS), dtype=np.float32), np.empty(0, dtype=np.int64))
    assert got.shape == (0, N_MODEL_INPUTS + 1)


@pytest.mark.parametrize(
    ("rows", "classes"),
    [
        ((2, N_MODEL_INPUTS), [0]),
        ((1, N_MODEL_INPUTS - 1), [0]),
        ((1, N_MODEL_INPUTS), [5]),
        ((1, N_MODEL_INPUTS), [-1]),
    ],
)
def test_rejects_mismatched_input(tiny_bundle, rows, classes):
    """Rows of the wrong width, a class per row missing, or a class out of range are refused."""
    explainer = TreeExplainer.from_booster(load_booster(tiny_bundle))
    with pytest.raises(ValueError, match=r"expected|classes must"):
        explainer.contributions(np.zeros(rows, dtype=np.float32), np.asarray(classes))


def test_refuses_a_linear_booster():
    """A gblinear booster has no trees to explain."""
    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.random((50, 3)), label=rng.integers(0, 2, 50))
    booster = xgb.train({"booster": "gblinear", "objective": "binary:logistic"}, data, num_boost_round=2)
    with pytest.raises(ValueError, match="gbtree"):
        TreeExplainer.from_booster(booster)


def test_threads_get_the_same_answers(tiny_bundle):
    """Explaining from several threads at once gives each thread the single-threaded answer."""
    booster = load_booster(tiny_bundle)
    explainer = TreeExplainer.from_booster(booster)
    matrix = probe_matrix(booster, rows=300)
    classes = np.arange(300) % 5
    expected = explainer.contributions(matrix, classes)
    results: list[np.ndarray] = []

    def run() -> None:
        results.append(explainer.contributions(matrix, classes))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(np.array_equal(r, expected) for r in results)
