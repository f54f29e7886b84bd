"""The walk of small calls: XGBoost's answers for every shape of forest it takes, refused where it cannot be one."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from leadscore.model.bundle import default_bundle_dir, load_bundle
from leadscore.model.predictors import (
    MissingAsBounds,
    OneDalPredictor,
    XGBoostPredictor,
    booster_trees,
    cpu_vendor,
    default_block_rows,
    disagreement,
    probe_matrix,
    with_walk,
)
from leadscore.model.saved import ONEDAL_FILE
from leadscore.model.walk import (
    MAX_DEPTH,
    WALK_BELOW_ROWS,
    WALK_BELOW_ROWS_FIXED_BLOCKS,
    WALK_NAME,
    SmallCallsWalked,
    WalkedForest,
    WalkPredictor,
    _walk,
    walk_below_rows,
)
from tests.model.test_saved import rewrite


def walk_of(booster: xgb.Booster) -> WalkPredictor:
    """The walk of `booster`, missing inputs as its oneDAL model's plan has them."""
    trees = booster_trees(booster)
    plan = MissingAsBounds.of(trees, booster.num_features())
    return WalkPredictor(WalkedForest.of_booster(booster, trees, plan), plan)


def trained(classes: int, depth: int, rounds: int, parallel: int = 1, seed: int = 3) -> xgb.Booster:
    """A multi:softprob booster on random data a fifth missing: its trees end at many depths, both ways for NaN."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 9)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    y = (np.nan_to_num(x[:, 0]) * 2 + np.nan_to_num(x[:, 1]) > 0).astype(int) + (np.isnan(x[:, 2])).astype(int)
    y = y % classes
    params = {"objective": "multi:softprob", "num_class": classes, "max_depth": depth, "nthread": 1}
    params["num_parallel_tree"] = parallel
    if parallel > 1:
        params.update(subsample=0.8, colsample_bynode=0.8)
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=rounds)


def inputs(booster: xgb.Booster, rows: int = 300) -> np.ndarray:
    """The load-time probe (split values, one step either side, missing) and random rows."""
    rng = np.random.default_rng(5)
    extra = rng.normal(size=(rows, booster.num_features())).astype(np.float32)
    extra[rng.random(extra.shape) < 0.3] = np.nan
    return np.concatenate([probe_matrix(booster), extra])


def test_the_packaged_model_walked_gives_xgboosts_answers(default_scorer):
    """The shipped model's 1,000 depth-6 trees, walked: XGBoost's probabilities (<= 1e-6) and scores, in any size."""
    booster = default_scorer.booster
    matrix = inputs(booster)
    walk = walk_of(booster)
    expected = XGBoostPredictor(booster).predict(matrix)
    got = np.concatenate([walk.predict(matrix[:1]), walk.predict(matrix[1:9]), walk.predict(matrix[9:])])
    assert disagreement(expected, got) is None


@pytest.mark.parametrize(
    ("classes", "depth", "rounds", "parallel"),
    [(3, 4, 7, 1), (5, 2, 3, 1), (4, 7, 4, 1), (3, 3, 4, 2)],
    ids=["3-classes-depth-4", "shallow", "depth-7", "parallel-trees"],
)
def test_forests_of_other_shapes_walked_give_xgboosts_answers(classes, depth, rounds, parallel):
    """Trees that end above the bottom, counts not a multiple of ten, and parallel trees: XGBoost's answers."""
    booster = trained(classes, depth, rounds, parallel)
    matrix = inputs(booster)
    assert disagreement(XGBoostPredictor(booster).predict(matrix), walk_of(booster).predict(matrix)) is None


def test_walking_from_several_threads_at_once_gives_each_its_answers(default_scorer):
    """The kernel writes only its own call's output: eight threads walking at once each get their rows' answers."""
    booster = default_scorer.booster
    matrix = inputs(booster, rows=64)
    walk = walk_of(booster)
    expected = walk.predict(matrix)
    results: dict[int, np.ndarray] = {}

    def run(k: int) -> None:
        results[k] = np.concatenate([walk.predict(matrix[i : i + 1 + k]) for i in range(0, matrix.shape[0], 1 + k)])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(8))
    for got in results.values():
        np.testing.assert_array_equal(got, expected)


def test_an_empty_call_gives_no_rows(default_scorer):
    """Zero rows in, a (0, classes) array out."""
    walk = walk_of(default_scorer.booster)
    assert walk.predict(np.empty((0, default_scorer.booster.num_features()), dtype=np.float32)).shape == (0, 5)


def chain(depth: int) -> dict[str, list[float]]:
    """A JSON tree that splits `depth` times down its left side."""
    nodes = 2 * depth + 1
    left, right = [-1] * nodes, [-1] * nodes
    for level in range(depth):
        left[2 * level], right[2 * level] = 2 * level + 2, 2 * level + 1
    return {
        "left_children": left,
        "right_children": right,
        "split_indices": [0] * nodes,
        "split_conditions": [0.5] * nodes,
        "default_left": [1] * nodes,
        "split_type": [0] * nodes,
    }


def test_a_forest_deeper_than_the_walk_takes_is_refused():
    """A tree deeper than MAX_DEPTH is a ValueError saying so, not a forest of 2^depth slots a tree."""
    plan = MissingAsBounds.of([chain(MAX_DEPTH + 1)], 1)
    with pytest.raises(ValueError, match=f"depth {MAX_DEPTH + 1}"):
        WalkedForest.of([chain(MAX_DEPTH + 1)], [0], [0.0, 0.0], plan)
    assert WalkedForest.of([chain(MAX_DEPTH)], [0], [0.0, 0.0], plan).leaf.shape == (1, 1 << MAX_DEPTH)


def test_a_forest_with_categorical_splits_is_refused():
    """Categorical splits are not thresholds: ValueError."""
    tree = chain(2)
    tree["split_type"] = [1] * len(tree["split_type"])
    with pytest.raises(ValueError, match="categorical"):
        WalkedForest.of([tree], [0], [0.0, 0.0], MissingAsBounds.of([chain(2)], 1))


def test_only_multi_class_probability_boosters_are_walked():
    """A binary:logistic booster is refused (its answer is not a softmax)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, label=x[:, 0] > 0), 2)
    trees = booster_trees(booster)
    with pytest.raises(ValueError, match="multi:softprob"):
        WalkedForest.of_booster(booster, trees, MissingAsBounds.of(trees, 3))


class Recording:
    """A predictor that answers zeros and records the rows of each call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[int] = []

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls.append(matrix.shape[0])
        return np.zeros((matrix.shape[0], 5), dtype=np.float32)


def test_calls_below_the_cut_are_walked_and_the_rest_go_to_onedal():
    """SmallCallsWalked: 1 and 63 rows to the walk, 64 and 500 to the large predictor; its name says both."""
    small, large = Recording("walk"), Recording("blocks")
    routed = SmallCallsWalked(small, large, below=64)
    for rows in (1, 63, 64, 500):
        routed.predict(np.zeros((rows, 3), dtype=np.float32))
    assert (small.calls, large.calls) == ([1, 63], [64, 500])
    assert routed.name == "blocks; under 64 rows: walk"


def test_the_cut_follows_onedals_blocks():
    """26 rows where oneDAL sizes its blocks (Intel); 48 under its fixed 80-row blocks (AMD), as measured."""
    assert walk_below_rows(None) == WALK_BELOW_ROWS == 26
    assert walk_below_rows(80) == WALK_BELOW_ROWS_FIXED_BLOCKS == 48


def test_the_service_walks_small_calls_below_this_cpus_cut():
    """The served predictor's name gives the cut of this machine's oneDAL blocks."""
    cut = walk_below_rows(default_block_rows(cpu_vendor()))
    assert f"under {cut} rows: {WALK_NAME}" in load_bundle(default_bundle_dir(), warm_explainer=False).predictor


def test_the_service_walks_small_calls_of_the_packaged_bundle():
    """The packaged bundle's saved file holds the walk: its scorer walks small calls; batch scoring's does not."""
    assert WALK_NAME in load_bundle(default_bundle_dir(), warm_explainer=False).predictor
    alone = load_bundle(default_bundle_dir(), warm_explainer=False, walk_small_calls=False)
    assert alone.predictor.startswith("onedal")
    assert WALK_NAME not in alone.predictor


def test_a_converted_model_walks_small_calls(tiny_bundle, tmp_path):
    """A bundle without its saved file converts at load and walks small calls too (checked against XGBoost)."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / ONEDAL_FILE).unlink()
    scorer = load_bundle(copy, warm_explainer=False)
    assert scorer.predictor_model_source == "converted"
    assert WALK_NAME in scorer.predictor


def test_a_saved_walk_that_reads_outside_the_model_is_not_used(bundle_copy, caplog):
    """A walk whose columns point past the model's inputs is refused with the reason; oneDAL still serves all calls."""
    caplog.set_level(logging.WARNING, logger="leadscore.model")
    path = bundle_copy / ONEDAL_FILE
    with np.load(path, allow_pickle=False) as saved:
        column = saved["walk_column"].copy()
    column[0, 0] = 10_000
    rewrite(path, walk_column=column)
    scorer = load_bundle(bundle_copy, warm_explainer=False)
    assert scorer.predictor_model_source == "bundle"
    assert scorer.predictor.startswith("onedal")
    assert WALK_NAME not in scorer.predictor
    assert any("outside the model" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("broken", ["leaf-shape", "class", "dtype"])
def test_saved_walk_arrays_that_make_no_forest_are_refused(default_scorer, broken):
    """Leaves that do not fit the slots, a tree of a class the model lacks, another dtype: ValueError each."""
    booster = default_scorer.booster
    trees = booster_trees(booster)
    plan = MissingAsBounds.of(trees, booster.num_features())
    arrays = WalkedForest.of_booster(booster, trees, plan).arrays()
    if broken == "leaf-shape":
        arrays["walk_leaf"] = arrays["walk_leaf"][:, :-1]
    elif broken == "class":
        arrays["walk_class"] = np.full_like(arrays["walk_class"], 7)
    else:
        arrays["walk_threshold"] = arrays["walk_threshold"].astype(np.float64)
    with pytest.raises(ValueError, match="walk"):
        WalkedForest.from_arrays(arrays, plan.columns)
    assert WalkedForest.from_arrays({}, plan.columns) is None


def test_a_walk_that_disagrees_with_xgboost_is_not_used(default_scorer, caplog):
    """with_walk checks the walk against XGBoost's answers: off by a leaf, small calls stay with oneDAL."""
    caplog.set_level(logging.WARNING, logger="leadscore.model")
    booster = default_scorer.booster
    trees = booster_trees(booster)
    onedal = OneDalPredictor(booster, trees=trees)
    assert onedal.missing is not None
    forest = WalkedForest.of_booster(booster, trees, onedal.missing)
    forest.leaf[forest.tree_class == 0] += 0.5  # the first class's leaves moved: other probabilities
    probe = probe_matrix(booster, trees=trees)
    chosen = with_walk(onedal, lambda: forest, onedal.missing, XGBoostPredictor(booster).predict(probe), probe)
    assert chosen is onedal
    assert any("small calls stay with oneDAL" in str(getattr(r, "reason", "")) for r in caplog.records)


def test_the_saved_file_of_a_new_bundle_holds_its_walk(tiny_bundle: Path):
    """Training writes the walk into model.onedal.npz, beside the oneDAL model."""
    with np.load(tiny_bundle / ONEDAL_FILE, allow_pickle=False) as saved:
        assert {"walk_column", "walk_threshold", "walk_leaf", "walk_class", "walk_base"} <= set(saved.files)


def test_the_kernel_run_as_python_gives_what_its_compiled_form_gives(tiny_scorer):
    """The kernel's Python source, interpreted, equals numba's compiled kernel on a small forest (its tail included)."""
    booster = tiny_scorer.booster
    walk = walk_of(booster)
    matrix = inputs(booster, rows=20)[:40]
    rows = walk.missing.rows(matrix, matrix.shape[0])
    forest = walk.forest
    out = np.empty((matrix.shape[0], forest.classes), dtype=np.float32)
    _walk(rows, forest.column, forest.threshold, forest.leaf, forest.tree_class, forest.base, out)
    np.testing.assert_allclose(out, walk.predict(matrix), rtol=0, atol=1e-7)
    assert disagreement(XGBoostPredictor(booster).predict(matrix), out) is None
