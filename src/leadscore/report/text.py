"""The report as plain text for a terminal: one table per model version, the verdict, calibration and drift."""

from __future__ import annotations

from collections.abc import Sequence

from leadscore.drift.figures import Drift
from leadscore.report.judge import VersionReport


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the first left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def version_text(report: VersionReport, probability: str) -> list[str]:
    """One model version's lines."""
    lines = [
        f"model {report.model_version}: {report.leads:,} leads, {report.conversions:,} conversions "
        f"({_pct(report.conversion_rate)}); AUC by score {_num(report.auc_score)}, "
        f"by probability {_num(report.auc_probability)}",
        "",
    ]
    lines += table(
        ["score", "leads", "share", "conversions", "recall", "rate", "lift vs lowest", "lift vs all", "gains"],
        [
            [str(r.score), f"{r.leads:,}", _pct(r.share_of_leads), f"{r.conversions:,}", _pct(r.recall),
             _pct(r.conversion_rate), _x(r.lift_vs_lowest), _x(r.lift_vs_overall), _pct(r.cumulative_recall)]
            for r in reversed(report.scores)
        ],
    )  # fmt: skip
    lines.append("")
    lines += [f"{'PASS' if c.passed else 'FAIL'}  {c.name} ({c.detail})" for c in report.verdict]
    lines += ["", f"calibration (probability of conversion = {probability}):"]
    lines += table(
        ["probability", "leads", "mean predicted", "observed"],
        [[f"{b.low:.1f}-{b.low + 0.1:.1f}", f"{b.leads:,}", _num(b.mean_probability), _num(b.observed_rate)]
         for b in report.calibration],
    )  # fmt: skip
    return lines


def drift_text(figures: Drift) -> list[str]:
    """Drift lines: every input by PSI, then the score mix per day."""
    if not figures.inputs:
        return ["drift: no production rows in the range"]
    lines = [
        f"drift: largest PSI {figures.max_psi:.3f}; drifting (PSI > 0.25): {', '.join(figures.drifted) or 'none'}",
        "",
    ]
    lines += table(
        ["input", "kind", "rows", "PSI", "Jensen-Shannon", "unknown", ""],
        [
            [i.field, i.kind, f"{i.rows:,}", _num(i.psi), _num(i.jensen_shannon), _pct(i.unknown_share),
             "DRIFT" if i.drifted else ""]
            for i in sorted(figures.inputs, key=lambda i: -i.psi)
        ],
    )  # fmt: skip
    lines += ["", "score mix per day:"]
    lines += table(
        ["day", "leads", *(f"score {s}" for s in range(1, 6)), "low confidence"],
        [
            [d.day.isoformat(), f"{d.leads:,}", *(_pct(d.scores[s] / d.leads) for s in range(1, 6)),
             _pct(d.low_confidence_share)]
            for d in figures.days
        ],
    )  # fmt: skip
    return lines


def report_text(reports: Sequence[VersionReport], figures: Drift | None, probability: str) -> str:
    """The whole report."""
    lines: list[str] = []
    for report in reports:
        lines += [*version_text(report, probability), ""]
    if not reports:
        lines += ["no scored leads with a lead_id in the range", ""]
    if figures is not None:
        lines += drift_text(figures)
    return "\n".join(lines).rstrip() + "\n"
