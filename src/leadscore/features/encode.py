"""Turn validated raw lead columns into the model's input matrix, one column at a time.

Input is columnar (field name -> one value per lead, None when missing), so every step works on whole
arrays; the only per-value Python work is the cached category-map and job-title lookups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from leadscore.features.jobtitle import FUNCTION_INDEX, LEVEL_ORDINAL, parse_job_title
from leadscore.features.picklists import CategoryMap
from leadscore.features.spec import (
    CATEGORY_FIELDS,
    CORE_BY_NAME,
    CORE_FIELDS,
    CUSTOM_FIELDS,
    ENGINEERED_FEATURES,
    ENGINEERED_NAMES,
    INPUT_FIELDS,
    Kind,
)

FloatArray = npt.NDArray[np.float64]
RawColumns = Mapping[str, Sequence[Any]]

_COLUMN: Final = {name: i for i, name in enumerate(ENGINEERED_NAMES)}
_ORDINAL_FIELDS: Final = {"company_size", "seniority_level"}
_CATEGORY_COLUMN: Final = {
    f.name: _COLUMN[
        {"company_size": "company_size_ordinal", "seniority_level": "seniority_ordinal"}.get(f.name, f"{f.name}_code")
    ]
    for f in CATEGORY_FIELDS
}
_NUMERIC_KINDS: Final = (Kind.INT, Kind.FLOAT, Kind.BOOL)
# Core numeric inputs first, custom features last (the encoder slices them off the end).
NUMERIC_INPUTS: Final = tuple(f.name for f in CORE_FIELDS if f.kind in _NUMERIC_KINDS) + tuple(
    f.name for f in CUSTOM_FIELDS
)
OTHER_INPUTS: Final = tuple(f.name for f in INPUT_FIELDS if f.kind not in _NUMERIC_KINDS)
# Model inputs that are a raw numeric input as given (same name in the spec): derived, not listed.
_AS_GIVEN: Final = tuple(f.name for f in ENGINEERED_FEATURES if f.name in CORE_BY_NAME)
_AS_GIVEN_COLUMNS: Final = [_COLUMN[name] for name in _AS_GIVEN]
_AS_GIVEN_INPUTS: Final = [NUMERIC_INPUTS.index(name) for name in _AS_GIVEN]
_CUSTOM_COLUMNS: Final = [_COLUMN[f.name] for f in CUSTOM_FIELDS]


# Vocabulary values in any case and spacing, no synonyms: for callers without a model bundle's map.
PLAIN_CATEGORIES: Final = CategoryMap()


class LeadWarning(NamedTuple):
    """Something about one lead the caller should know, though the lead was scored.

    A NamedTuple rather than a frozen dataclass: a lead full of unknown values makes one per field, and a tuple
    is made in half the time (`bench/unknown_values.py`).
    """

    lead_index: int
    field: str
    value: str
    message: str


_UNKNOWN_MESSAGE: Final = {f.name: f"unknown {f.name} value; scored as unknown" for f in CATEGORY_FIELDS}


@dataclass(frozen=True, slots=True)
class Encoded:
    """The model inputs for a batch plus what the encoder noticed."""

    matrix: npt.NDArray[np.float32]  # shape (n, N_MODEL_INPUTS); NaN = missing
    # The raw numeric, boolean and custom inputs as given, shape (n, len(NUMERIC_INPUTS)), NaN = missing.
    # Exact: integers are bounded well below 2**53. The lake records raw values from here, not from lists.
    raw_numeric: npt.NDArray[np.float64]
    features_used: npt.NDArray[np.int64]  # raw inputs present per lead
    warnings: tuple[LeadWarning, ...]

    def rows(self, start: int, end: int) -> Encoded:
        """Leads start..end-1 (views, no copy), their warnings numbered from 0."""
        return Encoded(
            matrix=self.matrix[start:end],
            raw_numeric=self.raw_numeric[start:end],
            features_used=self.features_used[start:end],
            warnings=tuple(
                w._replace(lead_index=w.lead_index - start) for w in self.warnings if start <= w.lead_index < end
            ),
        )


def _timestamps(values: Sequence[datetime | None]) -> FloatArray:
    return np.array([math.nan if v is None else v.timestamp() for v in values], dtype=np.float64)


def _safe_ratio(numerator: FloatArray, denominator: FloatArray, out: FloatArray) -> None:
    """Numerator / denominator into `out` (NaN already) where the denominator is positive; NaN elsewhere."""
    np.divide(numerator, denominator, out=out, where=denominator > 0)


def encode(
    columns: RawColumns,
    n: int,
    now: datetime,
    now_per_lead: FloatArray | None = None,
    categories: CategoryMap = PLAIN_CATEGORIES,
) -> Encoded:
    """Encode `n` leads given as columns; `now` is the scoring time for recency features.

    `now_per_lead` (Unix seconds, one per lead) replaces `now` when leads of several requests are encoded together.
    `categories` maps the categorical values (CRM forms included) to vocabulary codes: the model bundle's map.
    """
    # Built feature by feature, one contiguous row per model input, and transposed once at the end: for the
    # 1-lead requests that are most of the traffic, the cost is the number of NumPy calls, not the data.
    x = np.full((len(ENGINEERED_NAMES), n), np.nan, dtype=np.float64)
    warnings: list[LeadWarning] = []

    for spec in CATEGORY_FIELDS:
        offset = 1 if spec.name in _ORDINAL_FIELDS else 0
        codes = [math.nan] * n  # a list, assigned once: NumPy item assignment costs more per value
        code_of = categories.code
        message = _UNKNOWN_MESSAGE[spec.name]
        for i, value in enumerate(columns[spec.name]):
            if value is None:
                continue
            code = code_of(spec.name, value)
            if code is None:
                warnings.append(LeadWarning(i, spec.name, value, message))
            else:
                codes[i] = code + offset
        x[_CATEGORY_COLUMN[spec.name]] = codes

    parsed = [None if t is None else parse_job_title(t) for t in columns["job_title"]]
    x[_COLUMN["job_function_code"]] = [np.nan if p is None else FUNCTION_INDEX[p[0]] for p in parsed]
    x[_COLUMN["job_level_ordinal"]] = [np.nan if p is None else LEVEL_ORDINAL[p[1]] for p in parsed]

    # Every numeric, boolean and custom input as one (fields, n) float array: one conversion, not 42.
    numeric_block = np.array([columns[name] for name in NUMERIC_INPUTS], dtype=np.float64).reshape(
        len(NUMERIC_INPUTS), n
    )
    x[_AS_GIVEN_COLUMNS] = numeric_block[_AS_GIVEN_INPUTS]
    x[_CUSTOM_COLUMNS] = numeric_block[-len(CUSTOM_FIELDS) :]
    numeric = dict(zip(NUMERIC_INPUTS, numeric_block, strict=True))

    interaction = _timestamps(columns["last_campaign_interaction"])
    # A clock a little ahead on the caller's side must not produce negative recency.
    now_seconds = now.timestamp() if now_per_lead is None else now_per_lead
    x[_COLUMN["days_since_last_interaction"]] = np.maximum((now_seconds - interaction) / 86400.0, 0.0)
    revenue, employees = numeric["account_revenue"], numeric["account_employees"]
    x[_COLUMN["log_account_revenue"]] = np.log1p(revenue)
    x[_COLUMN["log_account_employees"]] = np.log1p(employees)
    _safe_ratio(revenue, employees, x[_COLUMN["revenue_per_employee"]])
    sessions = numeric["website_sessions"]
    _safe_ratio(numeric["pages_viewed"], sessions, x[_COLUMN["pages_per_session"]])
    _safe_ratio(numeric["time_on_site"], sessions, x[_COLUMN["minutes_per_session"]])
    # NaN + number is NaN: conversion actions are missing if either part is.
    x[_COLUMN["conversion_actions"]] = numeric["form_fills"] + numeric["content_downloads"]

    present = (~np.isnan(numeric_block)).sum(axis=0, dtype=np.int64)
    present += (
        np.array([[v is not None for v in columns[name]] for name in OTHER_INPUTS], dtype=bool)
        .reshape(len(OTHER_INPUTS), n)
        .sum(axis=0, dtype=np.int64)
    )

    return Encoded(
        matrix=np.ascontiguousarray(x.T, dtype=np.float32),
        raw_numeric=np.ascontiguousarray(numeric_block.T),
        features_used=present,
        warnings=tuple(warnings),
    )
