"""The report's SQL: one text for DuckDB (over the lake's live files) and Athena (over the Iceberg tables).

Only functions both engines have are used (`row_number`, `bool_or`, `count_if`, `date_diff`, `FILTER`), so the
statements printed by `leadscore report --sql` run unchanged in Athena.
"""

# The statements are built from the settings' table names, the feature spec's field names, numbers and literals
# quoted by `_literal`: no caller text reaches them unquoted.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from leadscore.features.spec import SCORES

_LIKE_ESCAPE: Final = "!"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which rows a report reads: the tables, the test traffic left out, the time range and the outcome window."""

    predictions: str
    outcomes: str
    test_patterns: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    window_days: int = 90
    # An outcome without `converted` counts as a conversion when its outcome (1..5) is at least this score; the
    # probability judged against conversions is then the model's P(score >= this), the sum of those prob_ columns.
    converted_from_score: int = 4


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _like(pattern: str) -> str:
    """A shell pattern (`load-test-*`) as a LIKE pattern with `!` escaping."""
    escaped = "".join(f"{_LIKE_ESCAPE}{c}" if c in "%_!" else c for c in pattern)
    return escaped.replace("*", "%").replace("?", "_")


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMP '{moment:%Y-%m-%d %H:%M:%S.%f}'"


def production_filter(scope: Scope) -> str:
    """WHERE conditions of production traffic in the scope's time range (test traffic out, also by request id)."""
    conditions = ["NOT is_test"]
    conditions += [f"request_id NOT LIKE {_literal(_like(p))} ESCAPE '{_LIKE_ESCAPE}'" for p in scope.test_patterns]
    if scope.since is not None:
        conditions.append(f'"timestamp" >= {_timestamp(scope.since)}')
    if scope.until is not None:
        conditions.append(f'"timestamp" < {_timestamp(scope.until)}')
    return " AND ".join(conditions)


def probability(scope: Scope) -> str:
    """The model's probability of a conversion: P(score >= converted_from_score)."""
    return " + ".join(f"prob_{s}" for s in SCORES if s >= scope.converted_from_score)


def judged(scope: Scope) -> str:
    """Each lead's first production score per model version, with whether it converted within the window."""
    return f"""WITH ranked AS (
  SELECT lead_id, model_version, "timestamp" AS scored_at, score, {probability(scope)} AS p,
         row_number() OVER (PARTITION BY model_version, lead_id ORDER BY "timestamp", request_id, lead_index) AS nth
  FROM {scope.predictions}
  WHERE lead_id IS NOT NULL AND {production_filter(scope)}
),
first_scores AS (SELECT * FROM ranked WHERE nth = 1)
SELECT f.model_version, f.lead_id, f.score, f.p,
       coalesce(bool_or(coalesce(o.converted, o.outcome >= {scope.converted_from_score})), false) AS converted
FROM first_scores f
LEFT JOIN {scope.outcomes} o
  ON o.lead_id = f.lead_id AND o.occurred_at >= f.scored_at
 AND o.occurred_at < f.scored_at + INTERVAL '{scope.window_days}' DAY
GROUP BY f.model_version, f.lead_id, f.score, f.p"""  # nosec B608


def by_score(relation: str) -> str:
    """Leads, conversions and mean probability per model version and score."""
    return f"""SELECT model_version, score, count(*) AS leads, count_if(converted) AS conversions, avg(p) AS mean_p
FROM {relation} GROUP BY model_version, score ORDER BY model_version, score"""  # nosec B608


def calibration(relation: str) -> str:
    """Predicted probability against the observed conversion rate, in ten bins of the probability."""
    return f"""SELECT model_version, least(CAST(floor(p * 10) AS integer), 9) AS bin, count(*) AS leads,
       avg(p) AS mean_p, avg(CASE WHEN converted THEN 1.0 ELSE 0.0 END) AS observed
FROM {relation} GROUP BY 1, 2 ORDER BY 1, 2"""  # nosec B608


def probability_auc(relation: str) -> str:
    """AUC of converted against the probability (Mann-Whitney, tied probabilities at their mean rank)."""
    return f"""SELECT model_version, count_if(converted) AS positives, count_if(NOT converted) AS negatives,
       sum(r) FILTER (WHERE converted) AS positive_ranks
FROM (SELECT model_version, converted,
             rank() OVER (PARTITION BY model_version ORDER BY p)
             + (count(*) OVER (PARTITION BY model_version, p) - 1) / 2.0 AS r
      FROM {relation}) ranked
GROUP BY model_version ORDER BY model_version"""  # nosec B608


def score_mix(scope: Scope, low_confidence: float) -> str:
    """Per UTC day: leads per score and the share scored with confidence below `low_confidence`."""
    counts = ", ".join(f"count_if(score = {s}) AS score_{s}" for s in SCORES)
    return f"""SELECT CAST("timestamp" AS date) AS day, count(*) AS leads, {counts},
       avg(CASE WHEN confidence < {low_confidence!r} THEN 1.0 ELSE 0.0 END) AS low_confidence_share
FROM {scope.predictions} WHERE {production_filter(scope)} GROUP BY 1 ORDER BY 1"""  # nosec B608


def numeric_bins(scope: Scope, fields: Sequence[tuple[str, str, Sequence[float]]]) -> str:
    """Rows per reference bin of each numeric input (bin -1: missing), for (field, SQL expression, edges)."""
    parts = []
    for name, expression, edges in fields:
        steps = " + ".join(f"CASE WHEN {expression} >= {float(e)!r} THEN 1 ELSE 0 END" for e in edges) or "0"
        parts.append(
            f"SELECT {_literal(name)} AS field, CASE WHEN {expression} IS NULL THEN -1 ELSE {steps} END AS bin, "
            f"count(*) AS n FROM {scope.predictions} WHERE {production_filter(scope)} GROUP BY 2"  # nosec B608
        )
    return "\nUNION ALL\n".join(parts)


def category_values(scope: Scope, fields: Sequence[str]) -> str:
    """Rows per raw value of each categorical input (null: missing)."""
    return "\nUNION ALL\n".join(
        f"SELECT {_literal(name)} AS field, CAST(raw_{name} AS varchar) AS value, count(*) AS n "
        f"FROM {scope.predictions} WHERE {production_filter(scope)} GROUP BY 2"  # nosec B608
        for name in fields
    )


def numeric_expression(field: str, timestamp_fields: frozenset[str]) -> str:
    """The SQL value a numeric input is binned by: the raw column, or days before scoring for a timestamp."""
    if field in timestamp_fields:
        return f"""(date_diff('second', raw_{field}, "timestamp") / 86400.0)"""
    return f"CAST(raw_{field} AS double)"
