"""Evaluation metrics on hand-made probabilities whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from leadscore.training.evaluate import evaluate

ONE_HOT = np.eye(5)


def test_perfect_predictions():
    """One-hot probabilities on the true score: accuracy 1, AUC 1, diagonal confusion, log loss ~0."""
    outcome = np.array([1, 2, 3, 4, 5, 5, 1])
    metrics = evaluate(ONE_HOT[outcome - 1], outcome)
    assert metrics["rows"] == 7
    assert metrics["accuracy"] == 1.0
    assert metrics["within_one_accuracy"] == 1.0
    assert metrics["macro_auc"] == 1.0
    assert metrics["log_loss"] == pytest.approx(0.0, abs=1e-9)
    confusion = np.array(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    assert (confusion == np.diag([2, 1, 1, 1, 2])).all()
    assert metrics["confusion_matrix"]["labels"] == [1, 2, 3, 4, 5]


def test_uniform_probabilities_have_log_loss_ln5_and_chance_auc():
    """Uniform 0.2 everywhere: log loss ln 5, AUC 0.5 per score, argmax ties go to score 1."""
    outcome = np.array([1, 2, 3, 4, 5, 1, 2, 3, 4, 5])
    metrics = evaluate(np.full((10, 5), 0.2), outcome)
    assert metrics["log_loss"] == pytest.approx(math.log(5), abs=1e-5)
    assert metrics["macro_auc"] == 0.5
    assert metrics["accuracy"] == 0.2
    assert metrics["within_one_accuracy"] == 0.4


def test_reversed_ranking_has_auc_zero():
    """Probabilities that rank every lead exactly backwards give AUC 0 for the binary scores involved."""
    outcome = np.array([1, 1, 5, 5])
    probabilities = np.array([[0.0, 0, 0, 0, 1.0], [0.0, 0, 0, 0, 1.0], [1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0]])
    metrics = evaluate(probabilities, outcome)
    assert metrics["auc_per_score"]["1"] == 0.0
    assert metrics["auc_per_score"]["5"] == 0.0
    assert metrics["accuracy"] == 0.0
    assert metrics["within_one_accuracy"] == 0.0


def test_score_absent_from_held_out_rows_has_null_auc_and_json_safe_metrics():
    """A score nobody has gets a null AUC (not NaN) so the manifest and /model stay valid JSON."""
    outcome = np.array([1, 2, 3])
    metrics = evaluate(ONE_HOT[outcome - 1] * 0.9 + 0.02, outcome)
    assert metrics["auc_per_score"]["4"] is None
    assert metrics["auc_per_score"]["5"] is None
    assert metrics["macro_auc"] == 1.0
    json.dumps(metrics, allow_nan=False)


def test_single_class_has_no_macro_auc():
    """With one score only, no AUC is defined and macro AUC is null."""
    metrics = evaluate(np.full((3, 5), 0.2), np.array([2, 2, 2]))
    assert metrics["macro_auc"] is None


def test_calibration_bins_and_expected_error():
    """Confidence bins count every row; ECE is |confidence - accuracy| weighted by bin share."""
    # Two leads at confidence 0.9 (one right, one wrong) and two at 0.7 (both right).
    probabilities = np.array(
        [
            [0.9, 0.025, 0.025, 0.025, 0.025],
            [0.9, 0.025, 0.025, 0.025, 0.025],
            [0.075, 0.7, 0.075, 0.075, 0.075],
            [0.075, 0.7, 0.075, 0.075, 0.075],
        ]
    )
    metrics = evaluate(probabilities, np.array([1, 3, 2, 2]))
    bins = metrics["calibration"]["bins"]
    assert [(b["bin_low"], b["bin_high"], b["count"]) for b in bins] == [(0.7, 0.8, 2), (0.9, 1.0, 2)]
    assert [b["accuracy"] for b in bins] == [1.0, 0.5]
    # 0.5 * |0.7 - 1.0| + 0.5 * |0.9 - 0.5| = 0.35
    assert metrics["calibration"]["expected_calibration_error"] == pytest.approx(0.35)


def test_figures_are_those_of_the_former_hand_written_metrics():
    """scikit-learn's metrics give the figures the hand-written formulas gave (pinned from them, seed 11)."""
    rng = np.random.default_rng(11)
    probabilities = rng.dirichlet(np.ones(5), 300).astype(np.float32)
    metrics = evaluate(probabilities, rng.integers(1, 6, 300))
    assert (metrics["log_loss"], metrics["accuracy"], metrics["macro_auc"]) == (2.13118, 0.17, 0.48756)
    assert metrics["auc_per_score"] == {"1": 0.43006, "2": 0.48264, "3": 0.48215, "4": 0.51547, "5": 0.52747}
    assert metrics["within_one_accuracy"] == 0.52
    assert metrics["calibration"]["expected_calibration_error"] == 0.29806
