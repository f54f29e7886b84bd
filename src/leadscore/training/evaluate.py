"""Evaluation of a 5-class scorer on held-out data: log loss, accuracy, macro AUC, confusion, calibration.

Written with NumPy/SciPy rather than scikit-learn so the serving image does not carry scikit-learn for
five formulas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from leadscore.features.spec import SCORES


def _auc(positive: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties get average ranks)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(probabilities: npt.NDArray[np.floating[Any]], outcome: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Metrics of `probabilities` (n, 5) against true scores `outcome` (n,) in 1..5."""
    probs = np.clip(probabilities.astype(np.float64), 1e-15, 1.0)
    labels = outcome - 1
    n = labels.size
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    k = len(SCORES)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    aucs = [_auc(labels == c, probs[:, c]) for c in range(k)]
    defined = [a for a in aucs if not np.isnan(a)]

    # Ten bins [0.0, 0.1) .. [0.9, 1.0] by floor(10 c): float edges put 0.7 below linspace's 0.7000000000000001.
    bins = np.minimum(np.floor(confidence * 10.0).astype(np.int64), 9)
    correct = predicted == labels
    calibration: list[dict[str, float | int]] = []
    ece = 0.0
    for b in range(10):
        in_bin = bins == b
        count = int(in_bin.sum())
        if count == 0:
            continue
        mean_conf = float(confidence[in_bin].mean())
        accuracy = float(correct[in_bin].mean())
        ece += count / n * abs(mean_conf - accuracy)
        calibration.append(
            {"bin_low": b / 10, "bin_high": (b + 1) / 10, "count": count,
             "mean_confidence": round(mean_conf, 4), "accuracy": round(accuracy, 4)}
        )  # fmt: skip

    return {
        "rows": n,
        "log_loss": round(float(-np.log(probs[np.arange(n), labels]).mean()), 5),
        "accuracy": round(float(correct.mean()), 5),
        "macro_auc": round(float(np.mean(defined)), 5) if defined else None,
        # A score absent from the held-out rows has no AUC: null, since NaN is not JSON (the manifest is served).
        "auc_per_score": {str(s): None if np.isnan(a) else round(a, 5) for s, a in zip(SCORES, aucs, strict=True)},
        "within_one_accuracy": round(float((np.abs(predicted - labels) <= 1).mean()), 5),
        "confusion_matrix": {"rows_true_cols_predicted": confusion.tolist(), "labels": list(SCORES)},
        "calibration": {"expected_calibration_error": round(ece, 5), "bins": calibration},
    }
