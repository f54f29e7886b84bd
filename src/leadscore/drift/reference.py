"""Reference bins of a model's inputs, computed from its training data and kept in the bundle (`reference.json`).

Per raw business field: numeric fields get decile edges and the share of training rows in each bin (plus the
missing share); categorical fields get the share of each vocabulary value, of unknown values and of missing ones.
The last campaign interaction is binned as days before the reference time (at scoring time in production), the
quantity the model sees. The free-text job title has no bins: its derived function and level are not stored raw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import jensenshannon

from leadscore.features.picklists import CategoryMap
from leadscore.features.spec import CATEGORY_FIELDS, INPUT_FIELDS, Kind

REFERENCE_VERSION: Final = 1
QUANTILES: Final = tuple(q / 10 for q in range(1, 10))
MISSING: Final = "(missing)"
UNKNOWN: Final = "(unknown)"
# Shares are floored here before the logarithm of PSI: an empty bin would make it infinite.
_EPSILON: Final = 1e-4
# PSI above this is the conventional "significant shift" (0.1..0.25: moderate); the CDK alarm uses the same.
PSI_ALERT: Final = 0.25

NUMERIC_FIELDS: Final = tuple(f.name for f in INPUT_FIELDS if f.kind in (Kind.INT, Kind.FLOAT, Kind.TIMESTAMP))
BOOL_FIELDS: Final = tuple(f.name for f in INPUT_FIELDS if f.kind is Kind.BOOL)
CATEGORICAL_FIELDS: Final = (*(f.name for f in CATEGORY_FIELDS), *BOOL_FIELDS)
_TIMESTAMP_FIELDS: Final = frozenset(f.name for f in INPUT_FIELDS if f.kind is Kind.TIMESTAMP)
_VOCABULARY: Final = {f.name: f.vocabulary for f in CATEGORY_FIELDS}


def categories_of(field: str) -> tuple[str, ...]:
    """The categories a field's shares are kept for: its values, then unknown (not for booleans) and missing."""
    if field in BOOL_FIELDS:
        return ("true", "false", MISSING)
    return (*_VOCABULARY[field], UNKNOWN, MISSING)


def category_label(field: str, value: object, categories: CategoryMap) -> str:
    """The category a raw value falls in: its vocabulary value (CRM forms mapped), unknown, or missing."""
    if value is None:
        return MISSING
    if field in BOOL_FIELDS:
        return "true" if value else "false"
    code = categories.code(field, str(value))
    return UNKNOWN if code is None else _VOCABULARY[field][code]


def numeric_values(field: str, values: Sequence[Any], as_of: datetime) -> npt.NDArray[np.float64]:
    """A numeric field's values as floats (NaN when missing); timestamps as days before `as_of`."""
    if field in _TIMESTAMP_FIELDS:
        return np.array([np.nan if v is None else (as_of - v).total_seconds() / 86400.0 for v in values])
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def bin_index(edges: Sequence[float], values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """The bin of each value: the number of edges at or below it (0..len(edges)); the SQL computes the same."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right").astype(np.int64)


def numeric_reference(values: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Decile edges (distinct ones: counts have ties) and the share of rows per bin, missing share apart."""
    present = values[~np.isnan(values)]
    n = values.size
    # Empirical quantiles (values that occur): interpolated ones would split a tied count between two bins.
    edges = sorted({float(e) for e in np.quantile(present, QUANTILES, method="inverted_cdf")}) if present.size else []
    counts = np.bincount(bin_index(edges, present), minlength=len(edges) + 1)
    return {
        "edges": edges,
        "shares": [float(c / n) for c in counts],
        "missing": float((n - present.size) / n),
    }


def compute_reference(
    columns: Mapping[str, Sequence[Any]], rows: int, as_of: datetime, categories: CategoryMap
) -> dict[str, Any]:
    """The reference bins of validated training columns (the encoder's columns, as the API produces them)."""
    numeric = {
        name: numeric_reference(numeric_values(name, columns.get(name, [None] * rows), as_of))
        for name in NUMERIC_FIELDS
    }
    categorical: dict[str, dict[str, float]] = {}
    for name in CATEGORICAL_FIELDS:
        labels = [category_label(name, v, categories) for v in columns.get(name, [None] * rows)]
        tally = dict.fromkeys(categories_of(name), 0)
        for label in labels:
            tally[label] += 1
        categorical[name] = {label: count / rows for label, count in tally.items()}
    return {"format_version": REFERENCE_VERSION, "rows": rows, "numeric": numeric, "categorical": categorical}


def _floored(shares: Sequence[float]) -> npt.NDArray[np.float64]:
    return np.maximum(np.asarray(shares, dtype=np.float64), _EPSILON)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of `actual` shares against `expected` ones (same bins, each summing to 1)."""
    e, a = _floored(expected), _floored(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2: 0 same, 1 disjoint) between two share vectors."""
    value = float(jensenshannon(np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64), base=2))
    return 0.0 if math.isnan(value) else value


def numeric_shares(reference: Mapping[str, Any], counts: Sequence[int], missing: int) -> list[float]:
    """Bin shares plus the missing share last, from counts per bin and of missing values (empty: all zero)."""
    total = sum(counts) + missing
    if total == 0:
        return [0.0] * (len(reference["shares"]) + 1)
    return [c / total for c in counts] + [missing / total]


def reference_numeric_shares(reference: Mapping[str, Any]) -> list[float]:
    """The reference's bin shares with its missing share last (the order `numeric_shares` uses)."""
    return [*reference["shares"], reference["missing"]]
