"""Drift figures over the lake, against the bundle's reference bins.

PSI per input (and Jensen-Shannon for categories), the share of unknown categorical values, and the score mix and
low-confidence share per day.

DuckDB counts rows per reference bin and per raw categorical value; Python maps the (few) distinct raw values
through the bundle's category map, as the encoder does, and computes the indices from the counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Final

import duckdb

from leadscore.drift.reference import (
    BOOL_FIELDS,
    CATEGORICAL_FIELDS,
    MISSING,
    NUMERIC_FIELDS,
    PSI_ALERT,
    UNKNOWN,
    categories_of,
    category_label,
    jensen_shannon,
    numeric_shares,
    psi,
    reference_numeric_shares,
)
from leadscore.features.picklists import CategoryMap
from leadscore.features.spec import INPUT_FIELDS, SCORES, Kind
from leadscore.report import sql
from leadscore.report.sql import Scope

_TIMESTAMP_FIELDS: Final = frozenset(f.name for f in INPUT_FIELDS if f.kind is Kind.TIMESTAMP)
# A confidence below this is "low": the top score is less than even odds.
LOW_CONFIDENCE: Final = 0.5


@dataclass(frozen=True, slots=True)
class InputDrift:
    """One input's drift against its reference."""

    field: str
    kind: str  # numeric | categorical
    rows: int
    psi: float
    jensen_shannon: float | None  # categorical only
    unknown_share: float | None  # categorical only: unknown values among those given
    reference: list[float]  # shares per bin (numeric: bins then missing; categorical: `labels`)
    actual: list[float]
    labels: list[str]

    @property
    def drifted(self) -> bool:
        """PSI above the alert level (0.25)."""
        return self.psi > PSI_ALERT


@dataclass(frozen=True, slots=True)
class DayMix:
    """The score mix of one UTC day."""

    day: date
    leads: int
    scores: dict[int, int]
    low_confidence_share: float


@dataclass(frozen=True, slots=True)
class Drift:
    """Every drift figure of a scope."""

    inputs: list[InputDrift]
    days: list[DayMix]

    @property
    def max_psi(self) -> float:
        """The largest PSI over the inputs (0 when there are none)."""
        return max((i.psi for i in self.inputs), default=0.0)

    @property
    def drifted(self) -> list[str]:
        """The inputs whose PSI is above the alert level."""
        return [i.field for i in self.inputs if i.drifted]

    @property
    def unknown_share(self) -> float:
        """The largest share of unknown values over the categorical inputs."""
        return max((i.unknown_share or 0.0 for i in self.inputs), default=0.0)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values (days as ISO dates)."""
        return {
            "max_psi": self.max_psi,
            "drifted": self.drifted,
            "max_unknown_share": self.unknown_share,
            "inputs": [{**asdict(i), "drifted": i.drifted} for i in self.inputs],
            "days": [{**asdict(d), "day": d.day.isoformat()} for d in self.days],
        }


def _numeric(connection: duckdb.DuckDBPyConnection, scope: Scope, reference: Mapping[str, Any]) -> list[InputDrift]:
    fields = [
        (name, sql.numeric_expression(name, _TIMESTAMP_FIELDS), reference[name]["edges"])
        for name in NUMERIC_FIELDS
        if name in reference
    ]
    counts: dict[str, dict[int, int]] = {name: {} for name, _, _ in fields}
    for name, b, n in connection.execute(sql.numeric_bins(scope, fields)).fetchall():
        counts[name][int(b)] = int(n)
    out = []
    for name, _, edges in fields:
        given = counts[name]
        bins = [given.get(i, 0) for i in range(len(edges) + 1)]
        expected = reference_numeric_shares(reference[name])
        actual = numeric_shares(reference[name], bins, given.get(-1, 0))
        labels = [*(f"< {edges[0]:.3g}" if edges else "all",), *(f">= {e:.3g}" for e in edges), MISSING]
        out.append(
            InputDrift(
                name,
                "numeric",
                sum(bins) + given.get(-1, 0),
                psi(expected, actual),
                None,
                None,
                expected,
                actual,
                labels,
            )
        )
    return out


def _label(name: str, value: str | None, categories: CategoryMap) -> str:
    if name in BOOL_FIELDS and value is not None:
        return category_label(name, value == "true", categories)
    return category_label(name, value, categories)


def _categorical(
    connection: duckdb.DuckDBPyConnection, scope: Scope, reference: Mapping[str, Any], categories: CategoryMap
) -> list[InputDrift]:
    names = [n for n in CATEGORICAL_FIELDS if n in reference]
    tallies: dict[str, dict[str, int]] = {n: dict.fromkeys(categories_of(n), 0) for n in names}
    for name, value, n in connection.execute(sql.category_values(scope, names)).fetchall():
        tallies[name][_label(name, value, categories)] += int(n)
    out = []
    for name in names:
        labels = list(categories_of(name))
        tally = tallies[name]
        total = sum(tally.values())
        actual = [tally[label] / total if total else 0.0 for label in labels]
        expected = [float(reference[name].get(label, 0.0)) for label in labels]
        given = total - tally[MISSING]
        unknown = (tally.get(UNKNOWN, 0) / given if given else 0.0) if name not in BOOL_FIELDS else None
        out.append(
            InputDrift(
                name, "categorical", total, psi(expected, actual), jensen_shannon(expected, actual), unknown,
                expected, actual, labels,
            )
        )  # fmt: skip
    return out


def drift(
    connection: duckdb.DuckDBPyConnection,
    scope: Scope,
    reference: Mapping[str, Any],
    categories: CategoryMap,
    low_confidence: float = LOW_CONFIDENCE,
) -> Drift:
    """The drift figures of the production rows in `scope` against `reference` (a bundle's reference bins)."""
    connection.execute("SET TimeZone = 'UTC'")
    inputs = _numeric(connection, scope, reference["numeric"]) + _categorical(
        connection, scope, reference["categorical"], categories
    )
    days = [
        DayMix(day, int(n), {s: int(c) for s, c in zip(SCORES, counts, strict=True)}, float(low))
        for day, n, *counts, low in connection.execute(sql.score_mix(scope, low_confidence)).fetchall()
    ]
    return Drift([i for i in inputs if i.rows], days)
