"""Lake rows: what one scored request contributes, and how pending requests become one Arrow batch.

The lake owns its row type (`RowGroup`, plain values and arrays): the API converts a scored batch into it at the
edge, so storage never depends on scoring's types.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import operator
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
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


# What each row of a request shares: (lake column, RowGroup attribute), one value per request in a RowBlock.
_SCALARS: Final = (
    ("request_id", "request_id"),
    ("model_version", "model_version"),
    ("timestamp", "scored_at"),
    ("processing_time_ms", "processing_ms"),
    ("prediction_time_ms", "prediction_ms"),
    ("is_test", "is_test"),
    ("environment", "environment"),
    ("api_key_id", "api_key_id"),
    ("source", "source"),
    ("run_id", "run_id"),
)
_SCALAR_ATTRIBUTES: Final = tuple(attribute for _, attribute in _SCALARS)
_SCALAR_VALUES: Final = operator.attrgetter(*_SCALAR_ATTRIBUTES)
_TIMESTAMP_FIELDS: Final = tuple(f.name for f in CORE_FIELDS if f.kind is Kind.TIMESTAMP)
# Raw inputs kept as Python values: text as sent, timestamps as ISO 8601 text with their offset (orjson's).
_LIST_NAMES: Final = (*OTHER_INPUTS, "lead_id")
_DATETIME_TEXT: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC  # a naive datetime is UTC, as the lake takes it
# Rows of a spool record converted to Arrow at a time (the committer's CHUNK_ROWS): with the row group size
# (_compat.ROW_GROUP_ROWS), what sets a commit's peak memory beyond the committer's imports. Measured on the bench's
# 500-lead rows: 2,000 -> 8,000 cut the committer's CPU from 6.2 to 5.4 us a row (`bench/request_cost.py`; the fixed
# cost of ~140 columns per conversion), 16,000 no further, and the service's peak stayed 549 -> 551 MiB under
# 500-lead load (`bench/run.py --memory-only`; the committer child 292 -> 297 MiB).
BLOCK_ROWS: Final = 8_000


def _request_parts(groups: Sequence[RowGroup]) -> tuple[list[int], dict[str, list[Any]], dict[str, list[Any]]]:
    """The sizes of `groups`, their scalars (a list per RowGroup attribute), their raw lists (each request's own)."""
    # One tuple of scalars per request, then one list per scalar.
    per_request = zip(*map(_SCALAR_VALUES, groups), strict=True) if groups else ([] for _ in _SCALARS)
    columns = {name: [g.columns[name] for g in groups] for name in _LIST_NAMES}
    return [len(g.scores) for g in groups], dict(zip(_SCALAR_ATTRIBUTES, map(list, per_request), strict=True)), columns


def _chained(lists: Iterable[Sequence[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(lists))


@dataclass(frozen=True, slots=True)
class RowBlock:
    """The rows of consecutive requests laid out as columns: what a spool record holds and the committer converts.

    Per request: its size, its scalars and its reasons (if explained); per row, one request after another: the raw
    columns and the arrays. The committer's cost per record, not per request (one Python object per request and
    column measured 28 us a row for 1-lead requests, most of the committer's CPU; bench/README.md).
    """

    sizes: npt.NDArray[np.int64]  # rows of each request
    scalars: Mapping[str, Sequence[Any]]  # RowGroup attribute (_SCALARS) -> one value per request
    columns: Mapping[str, Sequence[str | None]]  # _LIST_NAMES -> a value per row (timestamps as ISO 8601 text)
    raw_numeric: npt.NDArray[np.float64]  # (rows, NUMERIC_INPUTS), NaN where missing
    matrix: npt.NDArray[np.float32]  # (rows, model inputs)
    probabilities: npt.NDArray[np.float64]  # (rows, scores)
    scores: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]
    features_used: npt.NDArray[np.int64]
    explanations: tuple[ExplainedRows | None, ...]  # one per request

    @property
    def size(self) -> int:
        """Rows (leads) in the block."""
        return len(self.scores)

    @classmethod
    def of(cls, groups: Sequence[RowGroup]) -> RowBlock:
        """The rows of `groups`, in order, as one block."""
        sizes, scalars, columns = _request_parts(groups)
        flat = {name: _chained(columns[name]) for name in _LIST_NAMES}
        for name in _TIMESTAMP_FIELDS:  # datetimes as a spool record holds them
            flat[name] = orjson.loads(orjson.dumps(flat[name], option=_DATETIME_TEXT))
        return cls(
            sizes=np.asarray(sizes, dtype=np.int64),
            scalars=scalars,
            columns=flat,
            **{name: _concatenate([getattr(g, name) for g in groups], dtype, width) for name, dtype, width in _ARRAYS},
            explanations=tuple(g.explanation for g in groups),
        )

    @classmethod
    def join(cls, blocks: Sequence[RowBlock]) -> RowBlock:
        """The rows of `blocks`, in order, as one block."""
        if len(blocks) == 1:
            return blocks[0]
        return cls(
            sizes=np.concatenate([b.sizes for b in blocks]),
            scalars={attribute: _chained(b.scalars[attribute] for b in blocks) for attribute in _SCALAR_ATTRIBUTES},
            columns={name: _chained(b.columns[name] for b in blocks) for name in _LIST_NAMES},
            **{name: np.concatenate([getattr(b, name) for b in blocks]) for name, _, _ in _ARRAYS},
            explanations=tuple(itertools.chain.from_iterable(b.explanations for b in blocks)),
        )

    def split(self, max_rows: int) -> list[RowBlock]:
        """The block as consecutive blocks of at most `max_rows` rows, cut between requests (a bigger one alone)."""
        if self.size <= max_rows or len(self.sizes) == 1:
            return [self]
        blocks = []
        ends = np.cumsum(self.sizes)
        first = 0
        while first < len(self.sizes):
            start = int(ends[first] - self.sizes[first])
            # The last request that still fits, or the first one alone.
            last = max(first + 1, int(np.searchsorted(ends, start + max_rows, side="right")))
            blocks.append(self._requests(first, last, start, int(ends[last - 1])))
            first = last
        return blocks

    def _requests(self, first: int, last: int, start: int, stop: int) -> RowBlock:
        return RowBlock(
            sizes=self.sizes[first:last],
            scalars={attribute: values[first:last] for attribute, values in self.scalars.items()},
            columns={name: values[start:stop] for name, values in self.columns.items()},
            **{name: getattr(self, name)[start:stop] for name, _, _ in _ARRAYS},
            explanations=self.explanations[first:last],
        )


def _concatenate(arrays: Sequence[npt.NDArray[Any]], dtype: type[np.generic], width: int) -> npt.NDArray[Any]:
    if not arrays:
        return np.empty((0, width) if width else 0, dtype=dtype)
    return np.asarray(arrays[0], dtype=dtype) if len(arrays) == 1 else np.concatenate(arrays).astype(dtype, copy=False)


def _blocks(items: Sequence[RowGroup | RowBlock]) -> list[RowBlock]:
    """Blocks as given, and each run of consecutive groups as one block."""
    blocks: list[RowBlock] = []
    run: list[RowGroup] = []
    for item in items:
        if isinstance(item, RowGroup):
            run.append(item)
            continue
        if run:
            blocks.append(RowBlock.of(run))
            run = []
        blocks.append(item)
    if run:
        blocks.append(RowBlock.of(run))
    return blocks


def _arrow_columns(values: npt.NDArray[Any], types: Sequence[pa.DataType]) -> list[pa.Array]:
    """Each column of a (rows, k) block of numbers as an Arrow array of its type, null where NaN.

    Built from buffers: one transposed copy and the validity bitmaps of all columns at once. `pa.array` with
    `from_pandas=True` on each strided column of a block cost 0.54 us a row for the 55 engineered inputs alone.
    """
    n = values.shape[0]
    columns = np.ascontiguousarray(values.T, dtype=np.float64)
    missing = np.isnan(columns)
    nulls = missing.sum(axis=1)
    validity = np.packbits(~missing, axis=1, bitorder="little")
    arrays = []
    for j, arrow_type in enumerate(types):
        column = columns[j]
        if pa.types.is_boolean(arrow_type):
            data = np.packbits(column != 0, bitorder="little")
        elif pa.types.is_integer(arrow_type):
            data = np.where(missing[j], 0, column).astype(np.int64)
        else:
            data = column
        bitmap = pa.py_buffer(validity[j]) if nulls[j] else None
        stored = pa.int64() if pa.types.is_integer(arrow_type) else arrow_type
        array = pa.Array.from_buffers(stored, n, [bitmap, pa.py_buffer(data)], null_count=int(nulls[j]))
        # A narrower integer column is a checked cast: a value it cannot hold fails the conversion, not wraps.
        arrays.append(array if stored == arrow_type else array.cast(arrow_type))
    return arrays


# The lake columns of each of a block's number blocks, in its column order.
_NUMBER_COLUMNS: Final = (
    ("probabilities", tuple(f"prob_{score}" for score in SCORES)),
    ("raw_numeric", tuple(f"raw_{name}" for name in NUMERIC_INPUTS)),
    ("matrix", tuple(f"engineered_{feature.name}" for feature in ENGINEERED_FEATURES)),
)


_UTC: Final = pa.timestamp("us", tz="UTC")


def to_record_batch(items: Sequence[RowGroup | RowBlock]) -> pa.RecordBatch:
    """One Arrow batch in the lake schema for all rows of `items` (scored requests, or blocks of them).

    Each column becomes one Arrow array from a block's lists and arrays: the cost is per row and per column, plus
    per block, not per request and column.
    """
    block = RowBlock.join(_blocks(items)) if items else RowBlock.of([])
    sizes = block.sizes
    rows = block.size
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    lead_index = (np.arange(rows) - starts).astype(np.int32)
    # A request's scalars (request id, time, ...) are the same for each of its rows: one value per request,
    # repeated by Arrow's take (a Python list per row and column cost a tenth of the committer's CPU).
    group_of_row = pa.array(np.repeat(np.arange(len(sizes), dtype=np.int64), sizes))
    arrays: dict[str, pa.Array] = {}
    for name, attribute in _SCALARS:
        values = block.scalars[attribute]
        if attribute == "scored_at":
            values = [_utc_naive(moment) for moment in values]
        arrays[name] = pa.array(values, ARROW_SCHEMA.field(name).type).take(group_of_row)
    # A lead without an id is stored with a null id, as the API answered it; its position is lead_index.
    arrays["lead_id"] = pa.array(block.columns["lead_id"], pa.string())
    arrays["lead_index"] = pa.array(lead_index, pa.int32())
    arrays["score"] = pa.array(block.scores.astype(np.int32))
    arrays["confidence"] = pa.array(block.confidence, pa.float64())
    arrays["features_used"] = pa.array(block.features_used.astype(np.int32))
    for attribute, names in _NUMBER_COLUMNS:
        types = [ARROW_SCHEMA.field(name).type for name in names]
        arrays.update(zip(names, _arrow_columns(getattr(block, attribute), types), strict=True))
    for name in _LIST_NAMES[:-1]:
        stored = ARROW_SCHEMA.field(f"raw_{name}").type
        if name in _TIMESTAMP_FIELDS:
            # Parsed by Arrow with their offsets, stored as UTC wall time (Iceberg `timestamp`).
            arrays[f"raw_{name}"] = pa.array(block.columns[name], pa.string()).cast(_UTC).cast(stored)
        else:
            arrays[f"raw_{name}"] = pa.array(block.columns[name], stored)
    timestamps = arrays["timestamp"]
    for key, part in zip(PARTITION_KEYS, (pc.year, pc.month, pc.day), strict=True):
        arrays[key] = part(timestamps).cast(pa.int32())
    if any(e is not None for e in block.explanations):
        explained = explained_rows(block.explanations, sizes.tolist())
    else:  # one filler for the whole block, not one per request
        explained = explained_rows([None], [rows])
    arrays.update(explain_arrays(*explained))
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


# A spool record is a JSON header (each request's size and scalars, the raw text columns of all its rows) followed
# by the raw bytes of the block's NumPy arrays, then each explained request's. It costs a few microseconds per
# request to write; the Arrow table, about 140 columns, is built by the committer once per commit (thousands of
# rows), where its fixed cost is amortised (Arrow IPC per group commit cost far more on the 1-lead path:
# bench/README.md, "cheap spool records").
RECORD_VERSION: Final = 5
# Version 3 and 4 records (one header entry and one set of arrays per request; 3: before the explain columns)
# still read: their rows become a block as they are read.
_GROUP_VERSIONS: Final = (3, 4)
_LENGTH: Final = struct.Struct("<I")
# The block's arrays in a version 5 record: (name, dtype, width; 0: one value per row).
_ARRAYS: Final = (
    ("matrix", np.float32, N_MODEL_INPUTS),
    ("probabilities", np.float64, len(SCORES)),
    ("scores", np.int64, 0),
    ("confidence", np.float64, 0),
    ("features_used", np.int64, 0),
    ("raw_numeric", np.float64, len(NUMERIC_INPUTS)),
)
# An explained request's arrays follow the block's: (name, dtype, width; None: the request's top-k width).
_EXPLAIN_ARRAYS: Final[tuple[tuple[str, type[np.generic], int | None], ...]] = (
    ("raising", np.int64, None),
    ("raising_contributions", np.float64, None),
    ("lowering", np.int64, None),
    ("lowering_contributions", np.float64, None),
    ("drivers", np.float64, len(DRIVER_PARTS)),
)


def serialize(groups: Sequence[RowGroup]) -> bytes:
    """One spool record holding the rows of `groups`.

    Raw timestamps go into the header as orjson writes datetimes (naive ones as UTC), for Arrow to parse at the
    committer: converting Python datetimes to Arrow on the request worker cost ~0.4 us a value.
    """
    sizes, scalars, columns = _request_parts(groups)
    header = {
        "v": RECORD_VERSION,
        "sizes": sizes,
        "scalars": scalars,
        "columns": columns,
        "explain_k": [None if g.explanation is None else int(g.explanation.raising.shape[1]) for g in groups],
    }
    # Each array's rows of every request one after another: the bytes of the block's array, copied once.
    buffers = [
        np.ascontiguousarray(getattr(g, name), dtype=dtype).tobytes() for name, dtype, _ in _ARRAYS for g in groups
    ]
    for g in groups:
        if g.explanation is not None:
            buffers.extend(
                np.ascontiguousarray(getattr(g.explanation, name), dtype=dtype).tobytes()
                for name, dtype, _ in _EXPLAIN_ARRAYS
            )
    encoded = orjson.dumps(header, option=_DATETIME_TEXT)
    return _LENGTH.pack(len(encoded)) + encoded + b"".join(buffers)


def _header(payload: bytes | memoryview) -> tuple[dict[str, Any], int]:
    (length,) = _LENGTH.unpack_from(payload)
    header = orjson.loads(payload[_LENGTH.size : _LENGTH.size + length])
    if not isinstance(header, dict) or header.get("v") not in (*_GROUP_VERSIONS, RECORD_VERSION):
        version = header.get("v") if isinstance(header, dict) else None
        raise ValueError(f"unsupported spool record version {version!r}")
    return header, _LENGTH.size + length


class _Reader:
    """NumPy arrays read one after another from a record's bytes, without copying them."""

    def __init__(self, payload: bytes | memoryview, offset: int) -> None:
        self.view = memoryview(payload)
        self.offset = offset

    def read(self, dtype: type[np.generic], n: int, width: int | None) -> npt.NDArray[Any]:
        """The next array: `n` values (width None) or an (n, width) matrix."""
        array = np.frombuffer(self.view, dtype=dtype, count=n if width is None else n * width, offset=self.offset)
        self.offset += array.nbytes
        return array if width is None else array.reshape(n, width)


def deserialize_blocks(payload: bytes | memoryview) -> list[RowBlock]:
    """The rows of one spool record, as blocks of at most BLOCK_ROWS rows (cut between requests)."""
    header, offset = _header(payload)
    if header["v"] in _GROUP_VERSIONS:
        groups = _deserialize_groups(header, _Reader(payload, offset))
        return RowBlock.of(groups).split(BLOCK_ROWS) if groups else []
    sizes = np.asarray(header["sizes"], dtype=np.int64)
    if not len(sizes):
        return []
    reader = _Reader(payload, offset)
    n = int(sizes.sum())
    arrays = {name: reader.read(dtype, n, width or None) for name, dtype, width in _ARRAYS}
    columns = header["columns"]
    explanations = tuple(
        None
        if k is None
        else ExplainedRows(
            **{name: reader.read(dtype, size, k if width is None else width) for name, dtype, width in _EXPLAIN_ARRAYS}
        )
        for k, size in zip(header["explain_k"], sizes.tolist(), strict=True)
    )
    scalars = header["scalars"]
    scalars["scored_at"] = [datetime.fromisoformat(v) for v in scalars["scored_at"]]
    block = RowBlock(
        sizes=sizes,
        scalars=scalars,
        columns={name: _chained(columns[name]) for name in _LIST_NAMES},
        **arrays,
        explanations=explanations,
    )
    return block.split(BLOCK_ROWS)


def _datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _deserialize_groups(header: dict[str, Any], reader: _Reader) -> list[RowGroup]:
    groups = []
    for meta in header["groups"]:
        columns = meta["columns"]
        n = len(columns["lead_id"])
        # The same arrays as a version 5 record's, but each request's one after another.
        arrays = {name: reader.read(dtype, n, width or None) for name, dtype, width in _ARRAYS}
        k = meta.get("explain_k")
        explanation = (
            None
            if k is None
            else ExplainedRows(
                **{name: reader.read(dtype, n, k if width is None else width) for name, dtype, width in _EXPLAIN_ARRAYS}
            )
        )
        for name in _TIMESTAMP_FIELDS:
            columns[name] = [_datetime(v) for v in columns[name]]
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
                **arrays,
                explanation=explanation,
            )
        )
    return groups


def segment_rows(path: Path) -> int:
    """Rows in a segment's readable records (headers only; what cannot be read counts 0)."""
    rows = 0
    for record in read_segment(path).records:
        try:
            header, _ = _header(record)
            if header["v"] in _GROUP_VERSIONS:
                rows += sum(len(meta["columns"]["lead_id"]) for meta in header["groups"])
            else:
                rows += sum(int(size) for size in header["sizes"])
        except (ValueError, KeyError, TypeError, struct.error):
            continue
    return rows


def deserialize(payload: bytes | memoryview) -> pa.Table:
    """The rows of one spool record, as a table in the lake schema."""
    return pa.Table.from_batches([to_record_batch(deserialize_blocks(payload))])
