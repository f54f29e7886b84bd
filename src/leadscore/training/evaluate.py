"""Evaluation of a 5-class scorer on held-out data: log loss, accuracy, macro AUC, confusion, calibration.

The metrics are scikit-learn's (installed with scikit-learn-intelex, the oneDAL predictor's package). The
calibration bins are computed here: scikit-learn's `calibration_curve` is for binary problems, and these bins
are of the top-class confidence of a multi-class model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score

from leadscore.features.spec import SCORES


def _auc(positive: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> float:
    """One-vs-rest area under the ROC curve; NaN when the held-out rows hold only one side."""
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def evaluate(probabilities: npt.NDArray[np.floating[Any]], outcome: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Metrics of `probabilities` (n, 5) against true scores `outcome` (n,) in 1..5."""
    probs = np.clip(probabilities.astype(np.float64), 1e-15, 1.0)
    labels = outcome - 1
    n = labels.size
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    k = len(SCORES)
    classes = list(range(k))
    confusion = confusion_matrix(labels, predicted, labels=classes)
    aucs = [_auc(labels == c, probs[:, c]) for c in classes]
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
        # Rows renormalised: float32 probabilities sum to 1 only within ~1e-7, which scikit-learn warns about.
        "log_loss": round(float(log_loss(labels, probs / probs.sum(axis=1, keepdims=True), labels=classes)), 5),
        "accuracy": round(float(accuracy_score(labels, predicted)), 5),
        "macro_auc": round(float(np.mean(defined)), 5) if defined else None,
        # A score absent from the held-out rows has no AUC: null, since NaN is not JSON (the manifest is served).
        "auc_per_score": {str(s): None if np.isnan(a) else round(a, 5) for s, a in zip(SCORES, aucs, strict=True)},
        "within_one_accuracy": round(float((np.abs(predicted - labels) <= 1).mean()), 5),
        "confusion_matrix": {"rows_true_cols_predicted": confusion.tolist(), "labels": list(SCORES)},
        "calibration": {"expected_calibration_error": round(ece, 5), "bins": calibration},
    }
