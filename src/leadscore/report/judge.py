"""The model judged on outcomes: per score share, conversions, recall, rate and lift; calibration, AUC, verdict.

DuckDB runs the SQL of `report.sql` over the tables it is given (the lake's live files); only aggregates come back
to Python, so the cost grows with the rows DuckDB scans, not with what Python holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

import duckdb

from leadscore.report import sql
from leadscore.report.sql import Scope

# MadKudu's bar: the top tiers hold 15-35 % of leads and 60 %+ of conversions; the best converts 10x the worst.
TOP_SHARE_RANGE: Final = (0.15, 0.35)
TOP_CONVERSION_SHARE: Final = 0.60
BEST_TO_WORST: Final = 10.0


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One score's figures for one model version."""

    score: int
    leads: int
    share_of_leads: float
    conversions: int
    recall: float | None  # share of all conversions
    conversion_rate: float
    lift_vs_lowest: float | None  # against the lowest score's rate (None when that rate is 0)
    lift_vs_overall: float | None
    mean_probability: float
    cumulative_share_of_leads: float  # from the top score down (cumulative gains)
    cumulative_recall: float | None


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """Leads whose probability of conversion falls in [low, low + 0.1)."""

    low: float
    leads: int
    mean_probability: float
    observed_rate: float


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class VersionReport:
    """The report of one model version."""

    model_version: str
    leads: int
    conversions: int
    conversion_rate: float
    scores: list[ScoreRow]
    calibration: list[CalibrationBin]
    auc_score: float | None
    auc_probability: float | None
    verdict: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every line of the verdict passed."""
        return all(c.passed for c in self.verdict)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def score_auc(rows: list[tuple[int, int, int]]) -> float | None:
    """AUC of converted against the score from (score, leads, conversions): tied scores count one half."""
    positives = sum(c for _, _, c in rows)
    negatives = sum(n - c for _, n, c in rows)
    if not positives or not negatives:
        return None
    below = 0
    wins = 0.0
    for _, n, c in sorted(rows):
        wins += c * (below + (n - c) / 2)
        below += n - c
    return wins / (positives * negatives)


def verdict(rows: list[ScoreRow], top_from: int) -> list[Check]:
    """The MadKudu-style checks: where the top tiers (scores >= `top_from`) stand, and best against worst."""
    top = [r for r in rows if r.score >= top_from]
    share = sum(r.share_of_leads for r in top)
    recall = sum(r.recall or 0.0 for r in top)
    low, high = TOP_SHARE_RANGE
    tiers = f"scores {top_from}-{max(r.score for r in rows)}" if rows else f"scores >= {top_from}"
    checks = [
        Check("top tiers hold 15-35% of leads", low <= share <= high, f"{tiers}: {share:.1%} of leads"),
        Check("top tiers hold 60%+ of conversions", recall >= TOP_CONVERSION_SHARE, f"{tiers}: {recall:.1%}"),
    ]
    if rows:
        best, worst = rows[-1], rows[0]
        ratio = _ratio(best.conversion_rate, worst.conversion_rate)
        passed = (ratio is not None and ratio >= BEST_TO_WORST) or (ratio is None and best.conversion_rate > 0)
        shown = "inf" if ratio is None else f"{ratio:.1f}x"
        rates = f"score {best.score} {best.conversion_rate:.1%} vs score {worst.score} {worst.conversion_rate:.1%}"
        checks.append(Check("best tier converts >= 10x the worst", passed, f"{rates}: {shown}"))
    return checks


def _score_rows(counts: list[tuple[int, int, int, float]]) -> list[ScoreRow]:
    leads = sum(n for _, n, _, _ in counts)
    conversions = sum(c for _, _, c, _ in counts)
    overall = conversions / leads if leads else 0.0
    lowest = counts[0][2] / counts[0][1] if counts else 0.0
    rows: list[ScoreRow] = []
    cumulative_leads = cumulative_conversions = 0
    by_top = {}
    for score, n, c, _ in sorted(counts, reverse=True):
        cumulative_leads += n
        cumulative_conversions += c
        by_top[score] = (cumulative_leads / leads, _ratio(cumulative_conversions, conversions))
    for score, n, c, mean_p in counts:
        rate = c / n
        rows.append(
            ScoreRow(
                score=score,
                leads=n,
                share_of_leads=n / leads,
                conversions=c,
                recall=_ratio(c, conversions),
                conversion_rate=rate,
                lift_vs_lowest=_ratio(rate, lowest),
                lift_vs_overall=_ratio(rate, overall),
                mean_probability=mean_p,
                cumulative_share_of_leads=by_top[score][0],
                cumulative_recall=by_top[score][1],
            )
        )
    return rows


def judge(connection: duckdb.DuckDBPyConnection, scope: Scope) -> list[VersionReport]:
    """The report per model version of the leads in `scope` (tables already registered on `connection`)."""
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(f"CREATE OR REPLACE TEMP TABLE judged AS {sql.judged(scope)}")
    counts: dict[str, list[tuple[int, int, int, float]]] = {}
    for version, score, n, c, mean_p in connection.execute(sql.by_score("judged")).fetchall():
        counts.setdefault(version, []).append((int(score), int(n), int(c), float(mean_p)))
    bins: dict[str, list[CalibrationBin]] = {}
    for version, b, n, mean_p, observed in connection.execute(sql.calibration("judged")).fetchall():
        bins.setdefault(version, []).append(CalibrationBin(b / 10, int(n), float(mean_p), float(observed)))
    aucs: dict[str, float | None] = {}
    for version, positives, negatives, ranks in connection.execute(sql.probability_auc("judged")).fetchall():
        aucs[version] = (
            (float(ranks) - positives * (positives + 1) / 2) / (positives * negatives)
            if positives and negatives
            else None
        )
    reports = []
    for version, rows in sorted(counts.items()):
        leads = sum(n for _, n, _, _ in rows)
        conversions = sum(c for _, _, c, _ in rows)
        score_rows = _score_rows(rows)
        reports.append(
            VersionReport(
                model_version=version,
                leads=leads,
                conversions=conversions,
                conversion_rate=conversions / leads,
                scores=score_rows,
                calibration=bins.get(version, []),
                auc_score=score_auc([(s, n, c) for s, n, c, _ in rows]),
                auc_probability=aucs.get(version),
                verdict=verdict(score_rows, scope.converted_from_score),
            )
        )
    return reports


def as_json(report: VersionReport) -> dict[str, Any]:
    """The report as plain JSON values."""
    return {**asdict(report), "passed": report.passed}
