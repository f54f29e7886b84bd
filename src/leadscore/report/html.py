"""One self-contained HTML file per report: inline CSS and SVG charts, nothing fetched when it is opened."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from leadscore.drift.figures import Drift
from leadscore.report import charts
from leadscore.report.judge import VersionReport

# Drifting inputs whose distributions are drawn (the most shifted first); the table lists every input.
MAX_DISTRIBUTIONS: Final = 6
_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 64rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; } h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.pass { color: #1a7f37; } .fail { color: #cf222e; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure svg { max-width: 30rem; height: auto; }
.note { color: #555; font-size: 0.85rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _chart(title: str, svg: str) -> str:
    return f'<figure aria-label="{_e(title)}">{svg}</figure>'


def page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    """A whole HTML document."""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>"
        f'<p class="note">{_e(subtitle)} Made {made}.</p>{"".join(sections)}</body></html>\n'
    )


def _mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def version_section(report: VersionReport, probability: str) -> str:
    """One model version: verdict, the table per score and its charts."""
    verdict = "".join(
        f'<li class="{"pass" if c.passed else "fail"}">{_e(_mark(c.passed))} {_e(c.name)}: {_e(c.detail)}</li>'
        for c in report.verdict
    )
    rows = [
        [r.score, f"{r.leads:,}", _pct(r.share_of_leads), f"{r.conversions:,}", _pct(r.recall), _pct(r.conversion_rate),
         _x(r.lift_vs_lowest), _x(r.lift_vs_overall), _pct(r.cumulative_recall)]
        for r in reversed(report.scores)
    ]  # fmt: skip
    table = _table(
        ["score", "leads", "share", "conversions", "recall", "rate", "lift vs lowest", "lift vs all", "gains"], rows
    )
    calibration = _table(
        ["probability", "leads", "mean predicted", "observed"],
        [[f"{b.low:.1f}-{b.low + 0.1:.1f}", f"{b.leads:,}", _num(b.mean_probability), _num(b.observed_rate)]
         for b in report.calibration],
    )  # fmt: skip
    return (
        f"<h2>Model {_e(report.model_version)}</h2>"
        f"<p>{report.leads:,} leads, {report.conversions:,} conversions ({_pct(report.conversion_rate)}); "
        f"AUC by score {_num(report.auc_score)}, by probability {_num(report.auc_probability)}.</p>"
        f"<h3>Verdict</h3><ul>{verdict}</ul>{table}"
        f'<div class="charts">{_chart("Lift by score", charts.lift_chart(report.scores))}'
        f"{_chart('Cumulative gains', charts.gains_chart(report.scores))}"
        f"{_chart('Calibration', charts.calibration_chart(report.calibration))}</div>"
        f'<h3>Calibration</h3><p class="note">Probability of conversion: {_e(probability)}.</p>{calibration}'
    )


def drift_section(figures: Drift) -> str:
    """Drift: PSI per input, the drifting inputs' distributions, the score mix over time."""
    if not figures.inputs:
        return "<h2>Drift</h2><p>No production rows in the range.</p>"
    drifted = [i for i in figures.inputs if i.drifted]
    rows = [
        [i.field, i.kind, f"{i.rows:,}", _num(i.psi), _num(i.jensen_shannon), _pct(i.unknown_share),
         "DRIFT" if i.drifted else ""]
        for i in sorted(figures.inputs, key=lambda i: -i.psi)
    ]  # fmt: skip
    most = sorted(drifted, key=lambda i: -i.psi)[:MAX_DISTRIBUTIONS]
    distributions = "".join(_chart(f"{i.field} distribution", charts.distribution_chart(i)) for i in most)
    return (
        f"<h2>Drift</h2><p>Largest PSI {figures.max_psi:.3f}; drifting (PSI above 0.25): "
        f"{_e(', '.join(figures.drifted) or 'none')}.</p>"
        f'<div class="charts">{_chart("Drifting inputs", charts.drift_chart(figures.inputs))}'
        f"{_chart('Score mix over time', charts.score_mix_chart(figures.days))}{distributions}</div>"
        f"{_table(['input', 'kind', 'rows', 'PSI', 'Jensen-Shannon', 'unknown', ''], rows)}"
    )


def report_page(reports: Sequence[VersionReport], figures: Drift | None, probability: str, scope: str) -> str:
    """The outcome report: each model version judged, then drift."""
    sections = [version_section(r, probability) for r in reports] or ["<h2>No scored leads in the range</h2>"]
    if figures is not None:
        sections.append(drift_section(figures))
    return page("Lead scores judged on outcomes", sections, scope)


def training_page(manifest: dict[str, Any], curves: Mapping[str, Sequence[float]]) -> str:
    """The report of a trained bundle: held-out metrics, confusion matrix, importance and learning curve."""
    metrics = manifest["metrics"]
    confusion = metrics["confusion_matrix"]
    summary = _table(
        ["metric", "held-out value"],
        [[k, metrics[k]] for k in ("rows", "log_loss", "accuracy", "within_one_accuracy", "macro_auc") if k in metrics],
    )
    matrix = charts.confusion_chart(confusion["rows_true_cols_predicted"], confusion["labels"])
    charts_html = [_chart("Confusion matrix", matrix)]
    if manifest.get("importance"):
        charts_html.append(_chart("Feature importance", charts.importance_chart(manifest["importance"])))
    if curves:
        charts_html.append(_chart("Learning curve", charts.learning_curve_chart(curves)))
    section = f'<h2>Held-out evaluation</h2>{summary}<div class="charts">{"".join(charts_html)}</div>'
    source = manifest.get("training_data", {})
    rows, name = source.get("rows", "?"), source.get("source") or "a table"
    subtitle = f"Model {manifest['version']}, trained on {rows} rows of {name}."
    return page(f"Training report: model {manifest['version']}", [section], subtitle)
