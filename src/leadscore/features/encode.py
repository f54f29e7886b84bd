"""Turn validated raw lead columns into the model's input matrix, one column at a time.

The encoder takes arrays (`LeadArrays`): strings dictionary-encoded (an index per lead into the distinct values),
numbers as float arrays with NaN for missing. The API's decoded request and `leadscore.score_table`'s Arrow columns
both become these arrays, so a lead is encoded the same way whichever way it arrives; the only per-value Python
work is the category-map and job-title lookup of each distinct string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, repeat
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
# Inputs read as strings (dictionary-encoded) and as timestamps (Unix seconds).
TEXT_INPUTS: Final = tuple(f.name for f in INPUT_FIELDS if f.kind in (Kind.CATEGORY, Kind.TEXT))
TIMESTAMP_INPUTS: Final = tuple(f.name for f in INPUT_FIELDS if f.kind is Kind.TIMESTAMP)
_ARRAY_INPUTS: Final = (*NUMERIC_INPUTS, *TIMESTAMP_INPUTS, *TEXT_INPUTS)  # the columns LeadArrays.of reads
# Model inputs that are a raw numeric input as given (same name in the spec): derived, not listed.
_AS_GIVEN: Final = tuple(f.name for f in ENGINEERED_FEATURES if f.name in CORE_BY_NAME)
_AS_GIVEN_COLUMNS: Final = np.array([_COLUMN[name] for name in _AS_GIVEN], dtype=np.intp)
_AS_GIVEN_INPUTS: Final = np.array([NUMERIC_INPUTS.index(name) for name in _AS_GIVEN], dtype=np.intp)
# Custom features are consecutive model inputs: a slice, not a gather.
_CUSTOM_COLUMNS: Final = slice(_COLUMN[CUSTOM_FIELDS[0].name], _COLUMN[CUSTOM_FIELDS[-1].name] + 1)
# The model inputs gathered from strings, in encode_arrays' order: the categories, then the job title's two.
_STRING_COLUMNS: Final = np.array(
    [*(_CATEGORY_COLUMN[f.name] for f in CATEGORY_FIELDS), _COLUMN["job_function_code"], _COLUMN["job_level_ordinal"]],
    dtype=np.intp,
)
# Rows of that gather that count a present input: each category, and the job title once.
_TEXT_ROWS: Final = slice(0, len(CATEGORY_FIELDS) + 1)


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
    # The raw numeric, boolean and custom inputs as given, shape (n, len(NUMERIC_INPUTS)), NaN = missing; a
    # transposed view of the encoder's input, not contiguous.
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


@dataclass(frozen=True, slots=True)
class TextColumn:
    """A string column dictionary-encoded: per lead an index into `values` (distinct strings), -1 where missing."""

    indices: npt.NDArray[np.int64]
    values: Sequence[str]

    @classmethod
    def of(cls, values: Sequence[str | None]) -> TextColumn:
        """Encode a list of strings (None = missing)."""
        index: dict[str, int] = {}
        codes = [-1 if v is None else index.setdefault(v, len(index)) for v in values]
        return cls(np.array(codes, dtype=np.int64), list(index))

    @classmethod
    def missing(cls, n: int) -> TextColumn:
        """`n` missing values."""
        return cls(np.full(n, -1, dtype=np.int64), ())

    def take(self, rows: npt.NDArray[np.int64]) -> TextColumn:
        """The values of `rows`, same dictionary."""
        return TextColumn(self.indices[rows], self.values)


@dataclass(frozen=True, slots=True)
class LeadArrays:
    """Validated leads as arrays, the encoder's input."""

    size: int
    text: Mapping[str, TextColumn]  # TEXT_INPUTS
    numeric: FloatArray  # (len(NUMERIC_INPUTS), n): NaN = missing; booleans as 0/1
    timestamps: FloatArray  # (len(TIMESTAMP_INPUTS), n): Unix seconds, NaN = missing

    @classmethod
    def joined(cls, parts: Sequence[tuple[RawColumns, int]]) -> LeadArrays:
        """The leads of several requests' validated columns ((columns, leads) pairs), in order, as one set of arrays.

        The Python columns are joined first and the arrays built once: building them per request and joining the
        arrays cost 35 us per 1-lead request in a micro-batch of 32, this 8 (numpy's fixed cost per call dominates).
        """
        if len(parts) == 1:
            return cls.of(*parts[0])
        columns = {name: list(chain.from_iterable(part[name] for part, _ in parts)) for name in _ARRAY_INPUTS}
        return cls.of(columns, sum(n for _, n in parts))

    @classmethod
    def of(cls, columns: RawColumns, n: int) -> LeadArrays:
        """From validated Python columns (field name -> value per lead, None = missing; datetimes aware)."""
        numeric = np.array([columns[name] for name in NUMERIC_INPUTS], dtype=np.float64).reshape(len(NUMERIC_INPUTS), n)
        timestamps = np.array(
            [[math.nan if v is None else v.timestamp() for v in columns[name]] for name in TIMESTAMP_INPUTS],
            dtype=np.float64,
        ).reshape(len(TIMESTAMP_INPUTS), n)
        return cls(n, {name: TextColumn.of(columns[name]) for name in TEXT_INPUTS}, numeric, timestamps)


def _safe_ratio(numerator: FloatArray, denominator: FloatArray, out: npt.NDArray[np.float32]) -> None:
    """Numerator / denominator into `out` (NaN already) where the denominator is positive; NaN elsewhere."""
    np.divide(numerator, denominator, out=out, where=denominator > 0)


def encode(
    columns: RawColumns,
    n: int,
    now: datetime,
    now_per_lead: FloatArray | None = None,
    categories: CategoryMap = PLAIN_CATEGORIES,
) -> Encoded:
    """Encode `n` leads given as validated Python columns: `encode_arrays` of `LeadArrays.of(columns, n)`."""
    return encode_arrays(LeadArrays.of(columns, n), now, now_per_lead, categories)


def encode_arrays(
    leads: LeadArrays,
    now: datetime,
    now_per_lead: FloatArray | None = None,
    categories: CategoryMap = PLAIN_CATEGORIES,
    *,
    warn: bool = True,
) -> Encoded:
    """Encode leads given as arrays; `now` is the scoring time for recency features.

    `now_per_lead` (Unix seconds, one per lead) replaces `now` when leads of several requests are encoded together.
    `categories` maps the categorical values (CRM forms included) to vocabulary codes: the model bundle's map.
    `warn=False` skips the per-lead warnings (a table scored offline reports none).
    """
    n = leads.size
    # Built feature by feature, one contiguous row per model input, and transposed once at the end: for the
    # 1-lead requests that are most of the traffic, the cost is the number of NumPy calls, not the data. In float32,
    # the model's own type: each value is computed in float64 and rounded once as it is stored, as a float64 matrix
    # cast at the end would round it, and the transpose moves half the bytes (1 M batch rows: -0.1 CPU-s).
    x = np.full((len(ENGINEERED_NAMES), n), np.nan, dtype=np.float32)
    warnings: list[LeadWarning] = []

    # Every string-derived model input in one gather: a lookup table per input (the code of each distinct
    # value, NaN last for missing) laid end to end, and each lead's dictionary index shifted into its table.
    # One NumPy call for all of them, not three per field: the 1-lead requests pay per call.
    tables: list[float] = []
    starts: list[int] = []
    sources: list[npt.NDArray[np.int64]] = []
    for spec in CATEGORY_FIELDS:
        offset = 1 if spec.name in _ORDINAL_FIELDS else 0
        column = leads.text[spec.name]
        known = [categories.code(spec.name, value) for value in column.values]
        starts.append(len(tables))
        tables.extend([math.nan if code is None else code + offset for code in known])
        tables.append(math.nan)
        sources.append(column.indices)
        if warn and None in known:
            unknown_values = {j for j, code in enumerate(known) if code is None}
            rows = [i for i, j in enumerate(column.indices.tolist()) if j in unknown_values]
            warnings.extend(
                map(
                    LeadWarning,
                    rows,
                    repeat(spec.name),
                    [column.values[j] for j in column.indices[rows].tolist()],
                    repeat(_UNKNOWN_MESSAGE[spec.name]),
                )
            )
    titles = leads.text["job_title"]
    parsed = [parse_job_title(t) for t in titles.values]
    for derived in ([FUNCTION_INDEX[p[0]] for p in parsed], [LEVEL_ORDINAL[p[1]] for p in parsed]):
        starts.append(len(tables))
        tables.extend(derived)
        tables.append(math.nan)
        sources.append(titles.indices)
    indices = np.stack(sources)
    ends = np.array([*starts[1:], len(tables)], dtype=np.int64)[:, None] - 1  # each table's NaN slot
    x[_STRING_COLUMNS] = np.array(tables, dtype=np.float64)[
        np.where(indices >= 0, indices + np.array(starts, dtype=np.int64)[:, None], ends)
    ]

    numeric_block = leads.numeric
    x[_AS_GIVEN_COLUMNS] = numeric_block[_AS_GIVEN_INPUTS]
    x[_CUSTOM_COLUMNS] = numeric_block[-len(CUSTOM_FIELDS) :]
    numeric = dict(zip(NUMERIC_INPUTS, numeric_block, strict=True))

    interaction = leads.timestamps[TIMESTAMP_INPUTS.index("last_campaign_interaction")]
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
    present += (~np.isnan(leads.timestamps)).sum(axis=0, dtype=np.int64)
    present += (indices[_TEXT_ROWS] >= 0).sum(axis=0, dtype=np.int64)

    return Encoded(
        matrix=np.ascontiguousarray(x.T),
        raw_numeric=numeric_block.T,  # a view: only the lake's record needs the rows, and copies them once
        features_used=present,
        warnings=tuple(warnings),
    )
