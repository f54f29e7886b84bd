"""Score a whole table of leads: Arrow columns in, Arrow columns out, the API's rules and model.

`score_table` reads each lead field as one Arrow column, checks it with vectorised compute kernels against the
same rules as the API's contract (a rejected row gets the message the API would give for that field), normalises
CRM-style values as the API does, and feeds the encoder arrays (strings dictionary-encoded, numbers as floats),
so a lead gets the same score whichever way it arrives. Python work is per distinct string or per rejected row,
never per value.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, TypeAdapter, ValidationError

from leadscore.api.schemas import ISO_DATETIME, MAX_ABS_FLOAT, MAX_INT, CustomFeatures, Lead, Timestamp
from leadscore.columns import CUSTOM_STRUCT, Renaming, plan_columns
from leadscore.features.encode import (
    NUMERIC_INPUTS,
    TEXT_INPUTS,
    TIMESTAMP_INPUTS,
    LeadArrays,
    TextColumn,
)
from leadscore.features.explained import explain_arrays
from leadscore.features.spec import (
    CORE_FIELDS,
    CUSTOM_FIELDS,
    DRIVERS,
    FALSE_TEXT,
    SCORES,
    TRUE_TEXT,
    InputField,
    Kind,
)
from leadscore.model.bundle import Scorer, default_bundle_dir, load_bundle
from leadscore.model.reasons import Explanations, ranked_rows
from leadscore.model.reasons import explain as explain_leads
from leadscore.scoring import score_arrays

ModelBundle: TypeAlias = Scorer
"""A loaded model bundle (`leadscore.model.bundle.load_bundle`)."""

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Rows encoded and predicted at once: bounds the float64 working matrix (about 30 MB) whatever the table's size.
CHUNK_ROWS: Final = 65_536
LEAD_ID_MAX_LENGTH: Final = 128
_UTC: Final = "UTC"
_NUMBER_TEXT: Final = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_HAS_OFFSET: Final = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
# Earliest and latest instants a timestamp field takes (Python's datetime range), in microseconds.
_MIN_US: Final = int((datetime(1, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
_MAX_US: Final = (
    int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    + 999_999
)

EXPLAIN_FIELDS: Final = (
    pa.field("explained", pa.bool_()),
    pa.field("reason_raising_fields", pa.list_(pa.string())),
    pa.field("reason_raising_contributions", pa.list_(pa.float64())),
    pa.field("reason_lowering_fields", pa.list_(pa.string())),
    pa.field("reason_lowering_contributions", pa.list_(pa.float64())),
    *(pa.field(f"driver_{name}", pa.float64()) for name in ("base", *DRIVERS)),
)
_OUTPUT_FIELDS: Final = (
    pa.field("row", pa.int64(), nullable=False),
    pa.field("lead_id", pa.string()),
    pa.field("score", pa.int8()),
    pa.field("confidence", pa.float64()),
    pa.field("model_version", pa.string()),
    pa.field("scored_at", pa.timestamp("us", tz=_UTC)),
    pa.field("error_field", pa.string()),
    pa.field("error_message", pa.string()),
)


# The output columns whose values repeat from row to row, the ones Parquet's dictionary encoding pays for. The
# others (row numbers, ids, confidences, contributions) are near unique: encoding them costs the writer 60% of its
# time for a larger file (1 M rows: 0.26 -> 0.10 CPU-s, 12.1 -> 8.8 MB).
_REPEATING: Final = frozenset(
    {"score", "model_version", "scored_at", "error_field", "error_message", "explained"}
    | {"reason_raising_fields", "reason_lowering_fields"}
)


def output_schema(explain: bool) -> pa.Schema:
    """The schema of `score_table`'s result (with the explain columns when `explain`)."""
    return pa.schema([*_OUTPUT_FIELDS, *(EXPLAIN_FIELDS if explain else ())])


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns of `schema` worth dictionary-encoding in a Parquet file (those whose values repeat)."""
    return [name for name in schema.names if name in _REPEATING]


# --- reading and checking the columns ----------------------------------------------------------------------------


@dataclass(slots=True)
class Rejections:
    """Per row, the first error in the API's order (its index into `pairs`, -1 when the row is valid)."""

    size: int
    first: npt.NDArray[np.int32] = field(init=False)
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.first = np.full(self.size, -1, dtype=np.int32)

    def add(self, name: str, mask: BoolArray, message: Callable[[int], str], *, per_value: bool = False) -> None:
        """Reject the rows of `mask` not already rejected, with `message(row)`.

        The message is asked for once (for the first such row) unless `per_value`: only a rejected row costs a
        call, and most tables have none.
        """
        if not mask.any():
            return
        rows = np.flatnonzero(mask & (self.first < 0))
        if rows.size == 0:
            return
        if not per_value:
            self.first[rows] = len(self.pairs)
            self.pairs.append((name, message(int(rows[0]))))
            return
        seen: dict[str, int] = {}
        for row in rows.tolist():
            text = message(row)
            if text not in seen:
                seen[text] = len(self.pairs)
                self.pairs.append((name, text))
            self.first[row] = seen[text]

    @property
    def valid(self) -> BoolArray:
        """Rows with no error."""
        return self.first < 0

    def columns(self) -> tuple[pa.Array, pa.Array]:
        """`error_field` and `error_message`, null where the row is valid."""
        indices = pa.array(self.first, mask=self.first < 0)
        fields = pa.array([p[0] for p in self.pairs], pa.string())
        messages = pa.array([p[1] for p in self.pairs], pa.string())
        return (
            pa.DictionaryArray.from_arrays(indices, fields).cast(pa.string()),
            pa.DictionaryArray.from_arrays(indices, messages).cast(pa.string()),
        )


def _api_message(spec: InputField, value: object) -> str:
    """The message the API's contract gives for `value` in field `spec` (validated by the same pydantic model)."""
    model: type[BaseModel] = CustomFeatures if spec.custom else Lead
    try:
        model.model_validate({spec.name: value})
    except ValidationError as exc:
        return str(exc.errors(include_url=False, include_input=False)[0]["msg"])
    return "Input is not valid"  # not reached: every caller passes a value the contract refuses


def _nulls_mask(array: pa.Array) -> BoolArray:
    return np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _mask(array: pa.Array) -> BoolArray:
    """A boolean Arrow array as NumPy, null as False."""
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _floats(array: pa.Array) -> FloatArray:
    """A numeric Arrow array as float64, null as NaN.

    Arrow's own conversion turns nulls into NaN: a float64 column without nulls is read in place, and no
    `fill_null` pass is made.
    """
    if not pa.types.is_float64(array.type):
        array = array.cast(pa.float64())
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def _plain(array: pa.Array) -> pa.Array:
    """Dictionary-encoded and large strings as plain strings (the kernels below take one layout)."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


def _rows_of_type(array: pa.Array, rejections: Rejections, spec: InputField, name: str) -> None:
    """Reject every non-null value of a column whose type the field never takes, with the API's message."""
    nonnull = ~_nulls_mask(array)
    rejections.add(name, nonnull, lambda row: _api_message(spec, array[row].as_py()))


def _read_text(array: pa.Array, spec: InputField, name: str, max_length: int, rejections: Rejections) -> TextColumn:
    if _is_string_dictionary(array):
        return _read_dictionary_text(array, spec, name, max_length, rejections)
    array = _plain(array)
    if pa.types.is_integer(array.type):
        array = array.cast(pa.string())  # CRM ids and CSV inference give numbers where text is meant
    if pa.types.is_null(array.type):
        return TextColumn.missing(len(array))
    if not pa.types.is_string(array.type):
        _rows_of_type(array, rejections, spec, name)
        return TextColumn.missing(len(array))
    encoded = pc.dictionary_encode(array)
    indices = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    # A value has at least as many bytes as characters: a column no longer than the limit in bytes has no value
    # too long, and one cheap pass says so (counting characters takes ~5x as long).
    longest = pc.max(pc.binary_length(array)).as_py()
    if longest is not None and longest > max_length:
        too_long = _mask(pc.greater(pc.utf8_length(array), max_length))
        rejections.add(name, too_long, lambda row: _api_message(spec, array[row].as_py()))
        indices[too_long] = -1
    return TextColumn(indices, encoded.dictionary.to_pylist())


def _is_string_dictionary(array: pa.Array) -> bool:
    """A dictionary of plain strings with no null among its values (what a Parquet reader's `read_dictionary` gives)."""
    return bool(
        pa.types.is_dictionary(array.type)
        and pa.types.is_string(array.type.value_type)
        and array.dictionary.null_count == 0
    )


def _read_dictionary_text(
    array: pa.DictionaryArray, spec: InputField, name: str, max_length: int, rejections: Rejections
) -> TextColumn:
    """`_read_text` of a dictionary-encoded column: its own indices and values, each distinct value checked once.

    Reading Parquet text columns as dictionaries and using them as they are saves their strings' decoding and a
    hash pass per column (1 M batch rows: about 0.2 CPU-s of ~10, `bench/batch.py`). A dictionary may hold values no
    row uses, or a value twice: the encoder looks up each entry, so neither changes a lead's code.
    """
    values = array.dictionary
    indices = np.asarray(array.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    longest = pc.max(pc.binary_length(values)).as_py()
    if longest is not None and longest > max_length:
        long_values = np.flatnonzero(_mask(pc.greater(pc.utf8_length(values), max_length)))
        too_long = np.isin(indices, long_values)
        rejections.add(name, too_long, lambda row: _api_message(spec, array[row].as_py()))
        indices[too_long] = -1
    return TextColumn(indices, values.to_pylist())


def _text_numbers(array: pa.Array) -> tuple[FloatArray, BoolArray]:
    """Numbers written as text (CSV, CRM exports): values, and the rows whose text is not a number."""
    trimmed = pc.utf8_trim_whitespace(array)
    blank = _mask(pc.equal(trimmed, ""))
    is_number = _mask(pc.match_substring_regex(trimmed, _NUMBER_TEXT))
    numbers = pc.if_else(pa.array(is_number), trimmed, pa.scalar(None, pa.string()))
    bad = ~is_number & ~blank & ~_nulls_mask(array)
    return _floats(numbers.cast(pa.float64())), bad


def _read_number(array: pa.Array, spec: InputField, name: str, rejections: Rejections) -> FloatArray:
    """An INT or FLOAT field as float64 (NaN = missing), every value the contract refuses rejected."""
    array = _plain(array)
    n = len(array)
    if pa.types.is_null(array.type):
        return np.full(n, np.nan)
    if pa.types.is_string(array.type):
        values, bad = _text_numbers(array)
        rejections.add(name, bad, lambda row: _api_message(spec, array[row].as_py()))
    elif pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type):
        values = _floats(array)
    else:
        _rows_of_type(array, rejections, spec, name)
        return np.full(n, np.nan)
    if _all_within(values, spec, integral=pa.types.is_integer(array.type)):
        return values
    infinite = np.isinf(values)
    rejections.add(name, infinite, lambda row: _api_message(spec, float(values[row])))
    if spec.kind is Kind.INT:
        with np.errstate(invalid="ignore"):
            fractional = ~infinite & ~np.isnan(values) & (np.floor(values) != values)
        rejections.add(name, fractional, lambda row: _api_message(spec, float(values[row])))
        lower = None if spec.minimum is None else float(np.ceil(spec.minimum))
        upper = float(MAX_INT)
    else:
        lower = spec.minimum if spec.minimum is not None else -MAX_ABS_FLOAT
        upper = spec.maximum if spec.maximum is not None else MAX_ABS_FLOAT
    finite = np.where(infinite, np.nan, values)
    with np.errstate(invalid="ignore"):
        if lower is not None:
            below = finite < lower
            rejections.add(name, below, lambda row: _api_message(spec, _as_number(spec, finite[row])))
        above = finite > upper
        rejections.add(name, above, lambda row: _api_message(spec, _as_number(spec, finite[row])))
    return np.where(np.isfinite(values), values, np.nan)


def _all_within(values: FloatArray, spec: InputField, *, integral: bool) -> bool:
    """True when no value of the column can be refused (each is missing, or finite, in bounds, and whole if INT).

    Two or three reductions instead of a dozen full passes and masks, for the common column with nothing to
    reject: `_read_number` checks value by value only when this is False.
    """
    if values.size == 0:
        return True
    with np.errstate(invalid="ignore"):
        low = float(np.fmin.reduce(values))  # NaN (missing) is ignored; all missing gives NaN
        high = float(np.fmax.reduce(values))
        if math.isnan(low):
            return True
        if spec.kind is Kind.INT:
            lower = -math.inf if spec.minimum is None else math.ceil(spec.minimum)
            if not (lower <= low and high <= MAX_INT and math.isfinite(low)):
                return False
            # Whole numbers: an integer column is; a float column's largest fractional part must be 0.
            return integral or not float(np.fmax.reduce(values - np.floor(values))) > 0
        lower = spec.minimum if spec.minimum is not None else -MAX_ABS_FLOAT
        upper = spec.maximum if spec.maximum is not None else MAX_ABS_FLOAT
        return lower <= low and high <= upper


def _as_number(spec: InputField, value: float) -> float | int:
    return int(value) if spec.kind is Kind.INT else float(value)


def _read_bool(array: pa.Array, spec: InputField, name: str, rejections: Rejections) -> FloatArray:
    """A boolean field as 0/1 (NaN = missing): booleans, 0/1 numbers, and true/false/yes/no/1/0 as text."""
    array = _plain(array)
    n = len(array)
    if pa.types.is_null(array.type):
        return np.full(n, np.nan)
    if pa.types.is_boolean(array.type):
        return _floats(array)
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        values = _floats(array)
        rejections.add(
            name, ~np.isnan(values) & (values != 0) & (values != 1), lambda row: _api_message(spec, array[row].as_py())
        )
        return np.where((values == 0) | (values == 1), values, np.nan)
    if pa.types.is_string(array.type):
        words = pc.utf8_lower(pc.utf8_trim_whitespace(array))
        true = _mask(pc.is_in(words, pa.array(TRUE_TEXT)))
        false = _mask(pc.is_in(words, pa.array(FALSE_TEXT)))
        blank = _mask(pc.equal(words, ""))
        rejections.add(
            name, ~true & ~false & ~blank & ~_nulls_mask(array), lambda row: _api_message(spec, array[row].as_py())
        )
        return np.where(true, 1.0, np.where(false, 0.0, np.nan))
    _rows_of_type(array, rejections, spec, name)
    return np.full(n, np.nan)


_TIMESTAMP_ADAPTER: Final = TypeAdapter(Timestamp)


def _timestamp_seconds(us: npt.NDArray[np.int64], missing: BoolArray) -> FloatArray:
    # Exactly datetime.timestamp() of the same instant: whole microseconds over 1e6 in float64.
    return np.where(missing, np.nan, us / 1e6)


def _read_timestamp(array: pa.Array, spec: InputField, name: str, rejections: Rejections) -> FloatArray:
    """A timestamp field as Unix seconds (NaN = missing); no offset means UTC, as in the API."""
    array = _plain(array)
    n = len(array)
    if pa.types.is_null(array.type):
        return np.full(n, np.nan)
    if pa.types.is_date(array.type):
        array = array.cast(pa.timestamp("us"))
    if pa.types.is_timestamp(array.type):
        naive = array.cast(pa.timestamp(array.type.unit))  # wall time if naive, UTC instants if not
        us = naive.cast(pa.timestamp("us"), safe=False).cast(pa.int64())
        missing = _nulls_mask(us)
        return _timestamp_seconds(np.asarray(us.fill_null(0).to_numpy(zero_copy_only=False)), missing)
    if not pa.types.is_string(array.type):
        _rows_of_type(array, rejections, spec, name)
        return np.full(n, np.nan)
    missing = _nulls_mask(array)
    iso = _mask(pc.match_substring_regex(array, ISO_DATETIME.pattern))
    rejections.add(name, ~iso & ~missing, lambda row: _api_message(spec, array[row].as_py()))
    iso_text = pc.if_else(pa.array(iso), array, pa.scalar(None, pa.string()))
    offset = pa.array(_mask(pc.match_substring_regex(iso_text, _HAS_OFFSET)))
    none = pa.scalar(None, pa.string())
    try:
        with_offset = pc.if_else(offset, iso_text, none).cast(pa.timestamp("us", tz=_UTC)).cast(pa.int64())
        without = pc.if_else(offset, none, iso_text).cast(pa.timestamp("us")).cast(pa.int64())
        us_array = pc.coalesce(with_offset, without)
        us = np.asarray(us_array.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        parsed = ~_nulls_mask(us_array)
        in_range = (us >= _MIN_US) & (us <= _MAX_US)
        if np.array_equal(parsed & in_range, iso):
            return _timestamp_seconds(us, ~iso)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return _timestamps_one_by_one(array, iso, spec, name, rejections)


def _timestamps_one_by_one(
    array: pa.Array, iso: BoolArray, spec: InputField, name: str, rejections: Rejections
) -> FloatArray:
    """The contract's own timestamp type on each distinct value, for columns Arrow's parser does not take whole.

    Forms such as a lower-case `t` or nanoseconds are valid for the API but not for Arrow's ISO 8601 cast.
    """
    encoded = pc.dictionary_encode(array)
    seconds: list[float] = []
    messages: list[str | None] = []
    for text in encoded.dictionary.to_pylist():
        try:
            seconds.append(_TIMESTAMP_ADAPTER.validate_python(text).timestamp())
            messages.append(None)
        except ValidationError:
            seconds.append(np.nan)
            messages.append(_api_message(spec, text))
    indices = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    lookup = np.array([*seconds, np.nan], dtype=np.float64)
    values = lookup[indices]
    failed = iso & np.isnan(values)

    def message(row: int) -> str:
        return messages[int(indices[row])] or "Input should be a valid datetime"

    rejections.add(name, failed, message, per_value=True)
    return values


@dataclass(frozen=True, slots=True)
class ReadLeads:
    """A table's leads as the encoder's arrays, their ids, and what was rejected."""

    leads: LeadArrays
    lead_ids: pa.Array
    rejections: Rejections


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array: its only chunk as it is (`combine_chunks` copies even one chunk)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _flat_columns(table: pa.Table) -> dict[str, pa.Array]:
    """Every column as one array; a `custom_features` struct's fields become flat custom feature columns."""
    columns = {name: _one_array(table.column(name)) for name in table.column_names}
    struct = columns.pop(CUSTOM_STRUCT, None)
    if struct is not None and not pa.types.is_null(struct.type):
        if not pa.types.is_struct(struct.type):
            raise ValueError(f"{CUSTOM_STRUCT} must be a struct of custom_feature_1..{len(CUSTOM_FIELDS)}")
        known = {f.name for f in CUSTOM_FIELDS}
        names = [struct.type.field(i).name for i in range(struct.type.num_fields)]
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"{CUSTOM_STRUCT} has fields the contract does not know: {', '.join(unknown)}")
        for child_name, child in zip(names, struct.flatten(), strict=True):
            columns.setdefault(child_name, child)
    return columns


def read_leads(table: pa.Table) -> ReadLeads:
    """Check and normalise a table's lead columns (absent columns are missing values; others are ignored)."""
    n = table.num_rows
    columns = _flat_columns(table)
    rejections = Rejections(n)
    absent = pa.nulls(n)

    # Checked in the order the API reports errors: lead_id, the custom features, then the core fields.
    lead_ids = _plain(columns.get("lead_id", absent))
    if pa.types.is_integer(lead_ids.type):
        lead_ids = lead_ids.cast(pa.string())
    if not (pa.types.is_string(lead_ids.type) or pa.types.is_null(lead_ids.type)):
        rejections.add("lead_id", ~_nulls_mask(lead_ids), lambda row: _lead_id_message(lead_ids[row].as_py()))
        lead_ids = pa.nulls(n, pa.string())
    else:
        lead_ids = lead_ids.cast(pa.string())
        too_long = _mask(pc.greater(pc.utf8_length(lead_ids), LEAD_ID_MAX_LENGTH))
        rejections.add("lead_id", too_long, lambda row: _lead_id_message(lead_ids[row].as_py()))

    numeric: dict[str, FloatArray] = {}
    for spec in CUSTOM_FIELDS:
        numeric[spec.name] = _read_number(columns.get(spec.name, absent), spec, spec.name, rejections)
    text: dict[str, TextColumn] = {}
    timestamps: dict[str, FloatArray] = {}
    for spec in CORE_FIELDS:
        array = columns.get(spec.name, absent)
        if spec.kind in (Kind.CATEGORY, Kind.TEXT):
            text[spec.name] = _read_text(array, spec, spec.name, spec.max_length or 0, rejections)
        elif spec.kind is Kind.BOOL:
            numeric[spec.name] = _read_bool(array, spec, spec.name, rejections)
        elif spec.kind is Kind.TIMESTAMP:
            timestamps[spec.name] = _read_timestamp(array, spec, spec.name, rejections)
        else:
            numeric[spec.name] = _read_number(array, spec, spec.name, rejections)

    leads = LeadArrays(
        size=n,
        text={name: text[name] for name in TEXT_INPUTS},
        numeric=np.stack([numeric[name] for name in NUMERIC_INPUTS]) if n else np.empty((len(NUMERIC_INPUTS), 0)),
        timestamps=np.stack([timestamps[name] for name in TIMESTAMP_INPUTS])
        if n
        else np.empty((len(TIMESTAMP_INPUTS), 0)),
    )
    return ReadLeads(leads, lead_ids, rejections)


def _lead_id_message(value: object) -> str:
    try:
        Lead.model_validate({"lead_id": value})
    except ValidationError as exc:
        return str(exc.errors(include_url=False, include_input=False)[0]["msg"])
    return "Input is not valid"


# --- explanations ------------------------------------------------------------------------------------------------


def explanation_columns(explanations: Explanations, valid: BoolArray) -> dict[str, pa.Array]:
    """The explain columns of scored rows (`valid`), null where a row was rejected: the lake's own builder."""
    return explain_arrays(ranked_rows(explanations), valid)


# --- scoring -------------------------------------------------------------------------------------------------------


def _repeat(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])).cast(pa.string())


def _score_chunk(
    scorer: Scorer, table: pa.Table, first_row: int, as_of: datetime, scored_at: datetime, explain: bool
) -> pa.Table:
    read = read_leads(table)
    n = table.num_rows
    batch = score_arrays(scorer, read.leads, as_of, warn=False)
    valid = read.rejections.valid
    invalid = ~valid
    error_field, error_message = read.rejections.columns()
    scored_us = int((scored_at - datetime(1970, 1, 1, tzinfo=UTC)) / _MICROSECOND)
    arrays: dict[str, pa.Array] = {
        "row": pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
        "lead_id": read.lead_ids,
        "score": pa.array(batch.scores.astype(np.int8), mask=invalid),
        "confidence": pa.array(batch.confidence, mask=invalid),
        "model_version": _repeat(scorer.version, n),
        "scored_at": pa.array(np.full(n, scored_us, dtype=np.int64), pa.timestamp("us", tz=_UTC)),
        "error_field": error_field,
        "error_message": error_message,
    }
    if explain:
        explanations = explain_leads(scorer.explainer, batch.encoded.matrix, batch.scores - SCORES[0])
        arrays.update(explanation_columns(explanations, valid))
    return pa.Table.from_pydict(arrays, schema=output_schema(explain))


_MICROSECOND: Final = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> Scorer:
    # The explainer is built at the first explain=True, if any. The calls here are chunks of up to CHUNK_ROWS rows,
    # which oneDAL's blocks score faster than the walk of small calls: numba is not imported for it.
    return load_bundle(Path(directory), warm_explainer=False, walk_small_calls=False)


# How a table's columns are renamed, in the advice of a refusal (`table.rename_columns` takes such a mapping).
_TABLE_RENAMING: Final = Renaming("{name!r}: {field!r}", ", ")


def resolve_bundle(bundle: ModelBundle | str | os.PathLike[str] | None) -> Scorer:
    """A loaded bundle: the one given, the one at a path (loaded once per process), or the packaged default."""
    if isinstance(bundle, Scorer):
        return bundle
    directory = default_bundle_dir() if bundle is None else Path(bundle)
    return _load(str(directory.resolve()))


def score_table(
    table: pa.Table | pa.RecordBatch,
    *,
    bundle: ModelBundle | str | os.PathLike[str] | None = None,
    as_of: datetime | None = None,
    explain: bool = False,
) -> pa.Table:
    """Score every row of `table` with the API's rules and model; one output row per input row, in order.

    Columns are the API's lead fields by name (`custom_feature_N` flat, or a `custom_features` struct); a missing
    column is missing values, other columns are ignored. `as_of` is the time recency is measured from (naive means
    UTC; default now). A row the contract refuses is not scored: `score` and `confidence` are null and
    `error_field` / `error_message` say why, as the API would. Schema: `output_schema(explain)`. A table with rows and
    no lead field among its columns is refused (`leadscore.columns.ColumnError`).
    """
    scorer = resolve_bundle(bundle)
    scored_at = datetime.now(UTC)
    if as_of is None:
        as_of = scored_at
    elif as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    n = table.num_rows
    if n == 0:
        return output_schema(explain).empty_table()
    # No lead field among the columns: a naming mismatch (ColumnError), not leads to score on nothing.
    plan_columns("the table", table.column_names, renaming=_TABLE_RENAMING)
    starts = range(0, n, CHUNK_ROWS)

    def chunk(start: int) -> pa.Table:
        return _score_chunk(scorer, table.slice(start, CHUNK_ROWS), start, as_of, scored_at, explain)

    if len(starts) == 1:
        return chunk(0)
    # The predictor and most kernels release the GIL: two chunks at once use both cores.
    with ThreadPoolExecutor(max_workers=min(len(starts), os.cpu_count() or 1)) as pool:
        return pa.concat_tables(list(pool.map(chunk, starts)))


__all__ = ["ModelBundle", "output_schema", "read_leads", "score_table"]
