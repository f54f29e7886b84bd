"""Lake rows: what one scored request contributes, and how pending requests become one Arrow batch."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa

from leadscore.features.encode import RawColumns
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, ENGINEERED_FEATURES, SCORES
from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.scoring import ScoredBatch

_INPUTS: Final = (*CORE_FIELDS, *CUSTOM_FIELDS)


@dataclass(frozen=True, slots=True)
class RowGroup:
    """The rows of one scored request, not yet laid out as columns (that happens once per group commit)."""

    request_id: str
    batch: ScoredBatch
    columns: RawColumns  # raw inputs by field name, plus "lead_id"
    processing_ms: float
    is_test: bool
    environment: str
    api_key_id: str | None = None


def is_test_request(request_id: str, patterns: Sequence[str]) -> bool:
    """True when the request id matches a test-traffic pattern (shell-style, e.g. `load-test-*`)."""
    return any(fnmatch.fnmatchcase(request_id, p) for p in patterns)


def _repeat(groups: Sequence[RowGroup], value: Callable[[RowGroup], object]) -> list[object]:
    return [v for g in groups for v in [value(g)] * g.batch.size]


def _int_column(values: np.ndarray[Any, Any], arrow_type: pa.DataType) -> pa.Array:
    missing = np.isnan(values)
    return pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing).cast(arrow_type)


def to_record_batch(groups: Sequence[RowGroup]) -> pa.RecordBatch:
    """One Arrow batch in the lake schema for all rows of `groups`."""
    arrays: dict[str, pa.Array] = {
        "request_id": pa.array(_repeat(groups, lambda g: g.request_id), pa.string()),
        "lead_id": pa.array(
            [str(i) if lead_id is None else lead_id for g in groups for i, lead_id in enumerate(g.columns["lead_id"])],
            pa.string(),
        ),
        "lead_index": pa.array(np.concatenate([np.arange(g.batch.size, dtype=np.int32) for g in groups]), pa.int32()),
        "model_version": pa.array(_repeat(groups, lambda g: g.batch.model_version), pa.string()),
        "timestamp": pa.array(_repeat(groups, lambda g: g.batch.scored_at), ARROW_SCHEMA.field("timestamp").type),
        "score": pa.array(np.concatenate([g.batch.scores for g in groups]).astype(np.int32)),
        "confidence": pa.array(np.concatenate([g.batch.confidence for g in groups])),
        "features_used": pa.array(np.concatenate([g.batch.encoded.features_used for g in groups]).astype(np.int32)),
        "processing_time_ms": pa.array(_repeat(groups, lambda g: g.processing_ms), pa.float64()),
        "prediction_time_ms": pa.array(_repeat(groups, lambda g: g.batch.prediction_ms), pa.float64()),
        "is_test": pa.array(_repeat(groups, lambda g: g.is_test), pa.bool_()),
        "environment": pa.array(_repeat(groups, lambda g: g.environment), pa.string()),
        "api_key_id": pa.array(_repeat(groups, lambda g: g.api_key_id), pa.string()),
    }
    probabilities = np.concatenate([g.batch.probabilities for g in groups])
    for i, score in enumerate(SCORES):
        arrays[f"prob_{score}"] = pa.array(probabilities[:, i])
    for spec in _INPUTS:
        name = f"raw_{spec.name}"
        arrays[name] = pa.array([v for g in groups for v in g.columns[spec.name]], ARROW_SCHEMA.field(name).type)
    matrix = np.concatenate([g.batch.encoded.matrix for g in groups]).astype(np.float64)
    for j, feature in enumerate(ENGINEERED_FEATURES):
        name = f"engineered_{feature.name}"
        column = matrix[:, j]
        arrow_type = ARROW_SCHEMA.field(name).type
        arrays[name] = (
            _int_column(column, arrow_type) if feature.integer else pa.array(column, arrow_type, from_pandas=True)
        )
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def serialize(groups: Sequence[RowGroup]) -> bytes:
    """Arrow IPC stream bytes of the groups' rows (one spool record)."""
    batch = to_record_batch(groups)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ARROW_SCHEMA) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def deserialize(payload: bytes) -> pa.Table:
    """The rows of one spool record."""
    with pa.ipc.open_stream(payload) as reader:
        return reader.read_all()
