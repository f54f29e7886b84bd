"""Lake rows: what one scored request contributes, and how pending requests become one Arrow batch.

The lake owns its row type (`RowGroup`, plain values and arrays): the API converts a scored batch into it at the
edge, so storage never depends on scoring's types.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.features.encode import NUMERIC_INPUTS, OTHER_INPUTS
from leadscore.features.explained import DRIVER_PARTS, ExplainedRows, explain_arrays, explained_rows
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, ENGINEERED_FEATURES, N_MODEL_INPUTS, SCORES, Kind
from leadscore.lake.schema import ARROW_SCHEMA, PARTITION_KEYS
from leadscore.lake.spool import read_segment

_INPUTS: Final = (*CORE_FIELDS, *CUSTOM_FIELDS)


@dataclass(frozen=True, slots=True)
class RowGroup:
    """The rows of one scored request, not yet laid out as columns (that happens once per group commit)."""

    request_id: str
    model_version: str
    scored_at: datetime
    prediction_ms: float
    processing_ms: float
    is_test: bool
    environment: str
    api_key_id: str | None
    columns: Mapping[str, Sequence[Any]]  # raw non-numeric inputs by field name, plus "lead_id"
    raw_numeric: npt.NDArray[np.float64]  # (rows, NUMERIC_INPUTS): raw numeric inputs, NaN where missing
    matrix: npt.NDArray[np.float32]  # (rows, model inputs): the engineered inputs the model saw
    probabilities: npt.NDArray[np.float64]  # (rows, scores)
    scores: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]
    features_used: npt.NDArray[np.int64]
    explanation: ExplainedRows | None = None  # the reasons and drivers, when they were computed with the scores
    # Where the rows came from (lake columns `source`, `run_id`): the API records online traffic.
    source: str = "online"
    run_id: str | None = None

    @property
    def size(self) -> int:
        """Rows (leads) in the group."""
        return len(self.scores)


def is_test_request(request_id: str, patterns: Sequence[str]) -> bool:
    """True when the request id matches a test-traffic pattern (shell-style, e.g. `load-test-*`)."""
    return _test_request_matcher(tuple(patterns))(request_id) is not None


@functools.lru_cache(maxsize=8)
def _test_request_matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    # One regex for all patterns, built once: asked on every request.
    if not patterns:
        return lambda _: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


def _utc_naive(moment: datetime) -> datetime:
    """The UTC wall time of `moment` without its zone (the lake's timestamps are Iceberg `timestamp`, UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def _int_column(values: np.ndarray[Any, Any], arrow_type: pa.DataType) -> pa.Array:
    missing = np.isnan(values)
    return pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing).cast(arrow_type)


_SCALARS: Final[tuple[tuple[str, Callable[[RowGroup], object]], ...]] = (
    ("request_id", lambda g: g.request_id),
    ("model_version", lambda g: g.model_version),
    ("timestamp", lambda g: _utc_naive(g.scored_at)),
    ("processing_time_ms", lambda g: g.processing_ms),
    ("prediction_time_ms", lambda g: g.prediction_ms),
    ("is_test", lambda g: g.is_test),
    ("environment", lambda g: g.environment),
    ("api_key_id", lambda g: g.api_key_id),
    ("source", lambda g: g.source),
    ("run_id", lambda g: g.run_id),
)
# Raw inputs kept as Python values (strings, timestamps); numeric ones travel as one float64 array.
_LIST_NAMES: Final = (*OTHER_INPUTS, "lead_id")
_RAW_KIND: Final = {f.name: f.kind for f in _INPUTS}


def to_record_batch(groups: Sequence[RowGroup]) -> pa.RecordBatch:
    """One Arrow batch in the lake schema for all rows of `groups`.

    One pass over the groups extends plain lists column by column (cheap per group), then each column
    becomes one Arrow array: the cost is per row and per column, not per group and column.
    """
    raw: dict[str, list[Any]] = {name: [] for name in _LIST_NAMES}
    for g in groups:
        columns = g.columns
        for name, values in raw.items():
            values.extend(columns[name])
    sizes = np.fromiter((g.size for g in groups), dtype=np.int64, count=len(groups))
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    lead_index = (np.arange(int(sizes.sum())) - starts).astype(np.int32)
    # A group's scalars (request id, time, ...) are the same for each of its rows: one value per group, repeated
    # by Arrow's take (a Python list per row and column cost a tenth of the committer's CPU).
    group_of_row = pa.array(np.repeat(np.arange(len(groups), dtype=np.int64), sizes))
    arrays: dict[str, pa.Array] = {
        name: pa.array([value(g) for g in groups], ARROW_SCHEMA.field(name).type).take(group_of_row)
        for name, value in _SCALARS
    }
    # A lead without an id is stored with a null id, as the API answered it; its position is lead_index.
    arrays["lead_id"] = pa.array(raw.pop("lead_id"), pa.string())
    arrays["lead_index"] = pa.array(lead_index, pa.int32())
    arrays["score"] = pa.array(np.concatenate([g.scores for g in groups]).astype(np.int32))
    arrays["confidence"] = pa.array(np.concatenate([g.confidence for g in groups]))
    arrays["features_used"] = pa.array(np.concatenate([g.features_used for g in groups]).astype(np.int32))
    probabilities = np.concatenate([g.probabilities for g in groups])
    for i, score in enumerate(SCORES):
        arrays[f"prob_{score}"] = pa.array(probabilities[:, i])
    for name, values in raw.items():
        stored = ARROW_SCHEMA.field(f"raw_{name}").type
        if name in _TIMESTAMP_FIELDS:
            # As _utc_naive, column-wise: Arrow takes aware datetimes as their UTC instants and naive ones as UTC.
            arrays[f"raw_{name}"] = pa.array(values, pa.timestamp("us", tz="UTC")).cast(stored)
        else:
            arrays[f"raw_{name}"] = pa.array(values, stored)
    numeric = np.concatenate([g.raw_numeric for g in groups])
    for j, name in enumerate(NUMERIC_INPUTS):
        column = numeric[:, j]
        kind = _RAW_KIND[name]
        if kind is Kind.FLOAT:
            arrays[f"raw_{name}"] = pa.array(column, pa.float64(), from_pandas=True)
        else:
            missing = np.isnan(column)
            filled = np.where(missing, 0, column)
            typed = filled.astype(np.int64) if kind is Kind.INT else filled.astype(np.bool_)
            arrays[f"raw_{name}"] = pa.array(typed, mask=missing)
    matrix = np.concatenate([g.matrix for g in groups]).astype(np.float64)
    for j, feature in enumerate(ENGINEERED_FEATURES):
        name = f"engineered_{feature.name}"
        column = matrix[:, j]
        arrow_type = ARROW_SCHEMA.field(name).type
        arrays[name] = (
            _int_column(column, arrow_type) if feature.integer else pa.array(column, arrow_type, from_pandas=True)
        )
    timestamps = arrays["timestamp"]
    for key, part in zip(PARTITION_KEYS, (pc.year, pc.month, pc.day), strict=True):
        arrays[key] = part(timestamps).cast(pa.int32())
    arrays.update(explain_arrays(*explained_rows([g.explanation for g in groups], sizes.tolist())))
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


# A spool record is a JSON header (scalars and raw input columns) followed by the raw bytes of each
# group's NumPy arrays. It costs a few microseconds per request to write; the Arrow table, about 170
# columns, is built by the committer once per commit (thousands of rows), where its fixed cost is amortised
# (Arrow IPC per group commit cost far more on the 1-lead path: bench/README.md, "cheap spool records").
RECORD_VERSION: Final = 4
# Version 3 records (before the explain columns) still read: their rows were not explained.
_READABLE_VERSIONS: Final = (3, RECORD_VERSION)
_LENGTH: Final = struct.Struct("<I")
_ARRAYS: Final = (
    ("matrix", np.float32, N_MODEL_INPUTS),
    ("probabilities", np.float64, len(SCORES)),
    ("scores", np.int64, 0),
    ("confidence", np.float64, 0),
    ("features_used", np.int64, 0),
    ("raw_numeric", np.float64, len(NUMERIC_INPUTS)),
)
# An explained group's arrays follow its others: (name, dtype, width; None: the group's top-k width, explain_k).
_EXPLAIN_ARRAYS: Final[tuple[tuple[str, type[np.generic], int | None], ...]] = (
    ("raising", np.int64, None),
    ("raising_contributions", np.float64, None),
    ("lowering", np.int64, None),
    ("lowering_contributions", np.float64, None),
    ("drivers", np.float64, len(DRIVER_PARTS)),
)
_TIMESTAMP_FIELDS: Final = tuple(f.name for f in CORE_FIELDS if f.kind is Kind.TIMESTAMP)


def serialize(groups: Sequence[RowGroup]) -> bytes:
    """One spool record holding the rows of `groups`."""
    metas = []
    buffers: list[bytes] = []
    for g in groups:
        metas.append(
            {
                "request_id": g.request_id,
                "scored_at": g.scored_at,
                "model_version": g.model_version,
                "prediction_ms": g.prediction_ms,
                "processing_ms": g.processing_ms,
                "is_test": g.is_test,
                "environment": g.environment,
                "api_key_id": g.api_key_id,
                "source": g.source,
                "run_id": g.run_id,
                "columns": {name: g.columns[name] for name in _LIST_NAMES},
                "explain_k": None if g.explanation is None else int(g.explanation.raising.shape[1]),
            }
        )
        arrays = (g.matrix, g.probabilities, g.scores, g.confidence, g.features_used, g.raw_numeric)
        buffers.extend(
            np.ascontiguousarray(a, dtype=dtype).tobytes() for a, (_, dtype, _) in zip(arrays, _ARRAYS, strict=True)
        )
        if g.explanation is not None:
            buffers.extend(
                np.ascontiguousarray(getattr(g.explanation, name), dtype=dtype).tobytes()
                for name, dtype, _ in _EXPLAIN_ARRAYS
            )
    header = orjson.dumps({"v": RECORD_VERSION, "groups": metas}, option=orjson.OPT_UTC_Z)
    return _LENGTH.pack(len(header)) + header + b"".join(buffers)


def _datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def deserialize_groups(payload: bytes | memoryview) -> list[RowGroup]:
    """The row groups of one spool record."""
    (length,) = _LENGTH.unpack_from(payload)
    header = orjson.loads(payload[_LENGTH.size : _LENGTH.size + length])
    if header.get("v") not in _READABLE_VERSIONS:
        raise ValueError(f"unsupported spool record version {header.get('v')!r}")
    view = memoryview(payload)
    offset = _LENGTH.size + length
    groups = []

    def read(dtype: type[np.generic], n: int, width: int | None) -> np.ndarray[Any, Any]:
        # width None: one value per row (a vector); else a (n, width) matrix.
        nonlocal offset
        array = np.frombuffer(view, dtype=dtype, count=n if width is None else n * width, offset=offset)
        offset += array.nbytes
        return array if width is None else array.reshape(n, width)

    for meta in header["groups"]:
        columns = meta["columns"]
        n = len(columns["lead_id"])
        arrays: list[Any] = [read(dtype, n, width or None) for _, dtype, width in _ARRAYS]
        k = meta.get("explain_k")
        explanation = (
            None
            if k is None
            else ExplainedRows(
                **{name: read(dtype, n, k if width is None else width) for name, dtype, width in _EXPLAIN_ARRAYS}
            )
        )
        for name in _TIMESTAMP_FIELDS:
            columns[name] = [_datetime(v) for v in columns[name]]
        matrix, probabilities, scores, confidence, features_used, raw_numeric = arrays
        groups.append(
            RowGroup(
                request_id=meta["request_id"],
                model_version=meta["model_version"],
                scored_at=datetime.fromisoformat(meta["scored_at"]),
                prediction_ms=meta["prediction_ms"],
                processing_ms=meta["processing_ms"],
                is_test=meta["is_test"],
                environment=meta["environment"],
                api_key_id=meta["api_key_id"],
                # Records written before these columns existed are online traffic.
                source=meta.get("source", "online"),
                run_id=meta.get("run_id"),
                columns=columns,
                raw_numeric=raw_numeric,
                matrix=matrix,
                probabilities=probabilities,
                scores=scores,
                confidence=confidence,
                features_used=features_used,
                explanation=explanation,
            )
        )
    return groups


def segment_rows(path: Path) -> int:
    """Rows in a segment's readable records (headers only; what cannot be read counts 0)."""
    rows = 0
    for record in read_segment(path).records:
        try:
            (length,) = _LENGTH.unpack_from(record)
            header = orjson.loads(record[_LENGTH.size : _LENGTH.size + length])
            rows += sum(len(meta["columns"]["lead_id"]) for meta in header["groups"])
        except (ValueError, KeyError, TypeError, struct.error):
            continue
    return rows


def deserialize(payload: bytes | memoryview) -> pa.Table:
    """The rows of one spool record, as a table in the lake schema."""
    return pa.Table.from_batches([to_record_batch(deserialize_groups(payload))])
