"""The report's charts as inline SVG (matplotlib, no network needed to open them).

Figures are built with matplotlib's object API (no pyplot state) and written with text kept as SVG text, so a
browser, a search or a test finds the titles and labels in the page.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Final

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from leadscore.drift.figures import DayMix, InputDrift
from leadscore.drift.reference import PSI_ALERT
from leadscore.features.spec import SCORES
from leadscore.report.judge import CalibrationBin, ScoreRow

_SIZE: Final = (6.4, 3.6)
_SVG_METADATA: Final = ("Creator", "Date", "Format", "Type")
_SCORE_COLOURS: Final = ("#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c")


def to_svg(figure: Figure) -> str:
    """The figure as an SVG element (no XML prologue), text kept as text."""
    buffer = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "leadscore"}):
        # No metadata block: it only names the tool and the time, and would make each file differ.
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata=dict.fromkeys(_SVG_METADATA))
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def lift_chart(rows: Sequence[ScoreRow]) -> str:
    """Conversion rate per score, each bar labelled with its lift against the overall rate."""
    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Lift by score")
    bars = axes.bar([str(r.score) for r in rows], [r.conversion_rate * 100 for r in rows], color="#3182bd")
    axes.bar_label(bars, labels=[f"{r.lift_vs_overall or 0:.1f}x" for r in rows])
    axes.set_xlabel("score")
    axes.set_ylabel("conversion rate (%)")
    axes.grid(axis="y", alpha=0.3)
    return to_svg(figure)


def gains_chart(rows: Sequence[ScoreRow]) -> str:
    """Cumulative share of conversions against cumulative share of leads, from the top score down."""
    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Cumulative gains")
    top_down = sorted(rows, key=lambda r: -r.score)
    x = [0.0, *(r.cumulative_share_of_leads * 100 for r in top_down)]
    y = [0.0, *((r.cumulative_recall or 0.0) * 100 for r in top_down)]
    axes.plot(x, y, marker="o", color="#08519c", label="model")
    for r, xi, yi in zip(top_down, x[1:], y[1:], strict=True):
        axes.annotate(f">= {r.score}", (xi, yi), textcoords="offset points", xytext=(4, -12), fontsize=8)
    axes.plot([0, 100], [0, 100], linestyle="--", color="grey", label="random")
    axes.set_xlabel("share of leads, best scores first (%)")
    axes.set_ylabel("share of conversions (%)")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    return to_svg(figure)


def calibration_chart(bins: Sequence[CalibrationBin]) -> str:
    """Mean predicted probability against the observed conversion rate per probability bin."""
    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Calibration")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    axes.plot([b.mean_probability for b in bins], [b.observed_rate for b in bins], marker="o", label="model")
    axes.set_xlabel("predicted probability of conversion")
    axes.set_ylabel("observed conversion rate")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    return to_svg(figure)


def score_mix_chart(days: Sequence[DayMix]) -> str:
    """Share of each score per day (stacked), with the low-confidence share as a line."""
    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Score mix over time")
    labels = [d.day.isoformat() for d in days]
    bottom = np.zeros(len(days))
    for score, colour in zip(SCORES, _SCORE_COLOURS, strict=True):
        shares = np.array([d.scores.get(score, 0) / d.leads * 100 if d.leads else 0.0 for d in days])
        axes.bar(labels, shares, bottom=bottom, color=colour, label=f"score {score}")
        bottom += shares
    axes.plot(labels, [d.low_confidence_share * 100 for d in days], color="#d62728", marker=".", label="low confidence")
    axes.set_ylabel("share of leads (%)")
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return to_svg(figure)


def drift_chart(inputs: Sequence[InputDrift], top: int = 15) -> str:
    """PSI of the most shifted inputs against the alert level."""
    shown = sorted(inputs, key=lambda i: i.psi, reverse=True)[:top][::-1]
    figure = Figure(figsize=(_SIZE[0], max(2.5, 0.3 * len(shown) + 1)), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Drifting inputs (PSI)")
    colours = ["#d62728" if i.drifted else "#3182bd" for i in shown]
    axes.barh([i.field for i in shown], [i.psi for i in shown], color=colours)
    axes.axvline(PSI_ALERT, linestyle="--", color="grey")
    axes.set_xlabel(f"population stability index (alert above {PSI_ALERT})")
    axes.tick_params(axis="y", labelsize=8)
    return to_svg(figure)


def distribution_chart(item: InputDrift) -> str:
    """An input's shares per bin: training reference beside production."""
    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(f"{item.field}: reference vs production")
    x = np.arange(len(item.labels))
    axes.bar(x - 0.2, [s * 100 for s in item.reference], width=0.4, label="training reference", color="#9ecae1")
    axes.bar(x + 0.2, [s * 100 for s in item.actual], width=0.4, label="production", color="#d62728")
    axes.set_xticks(x, item.labels, rotation=45, ha="right", fontsize=7)
    axes.set_ylabel("share (%)")
    axes.legend(fontsize=8)
    return to_svg(figure)


def confusion_chart(matrix: Sequence[Sequence[int]], labels: Sequence[int]) -> str:
    """A confusion matrix, true scores down, predicted across, each cell with its count."""
    figure = Figure(figsize=(4.8, 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Confusion matrix")
    values = np.asarray(matrix)
    axes.imshow(values, cmap="Blues")
    for (i, j), v in np.ndenumerate(values):
        colour = "white" if v > values.max() / 2 else "black"
        axes.text(j, i, str(v), ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(len(labels)), [str(s) for s in labels])
    axes.set_yticks(range(len(labels)), [str(s) for s in labels])
    axes.set_xlabel("predicted score")
    axes.set_ylabel("true score")
    return to_svg(figure)


def importance_chart(importance: dict[str, float], top: int = 15) -> str:
    """Mean |SHAP| per business field, largest first."""
    shown = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    figure = Figure(figsize=(_SIZE[0], max(2.5, 0.3 * len(shown) + 1)), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Feature importance")
    axes.barh([k for k, _ in shown], [v for _, v in shown], color="#3182bd")
    axes.set_xlabel("mean |SHAP| (log-odds of the predicted score)")
    axes.tick_params(axis="y", labelsize=8)
    return to_svg(figure)


def learning_curve_chart(curves: Mapping[str, Sequence[float]]) -> str:
    """Log loss per boosting round on the training rows and the held-out rows."""
    figure = Figure(figsize=_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title("Learning curve")
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, label=name)
    axes.set_xlabel("boosting round")
    axes.set_ylabel("log loss")
    axes.legend()
    axes.grid(alpha=0.3)
    return to_svg(figure)
