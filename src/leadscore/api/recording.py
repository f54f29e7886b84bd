"""The edge between scoring and the lake: a scored request becomes the lake's own row type."""

from __future__ import annotations

from leadscore.features.encode import RawColumns
from leadscore.lake.records import RowGroup
from leadscore.model.reasons import Explanations, ranked_rows
from leadscore.scoring import ScoredBatch


def lake_rows(
    batch: ScoredBatch,
    columns: RawColumns,
    *,
    request_id: str,
    processing_ms: float,
    is_test: bool,
    environment: str,
    api_key_id: str | None,
    explanations: Explanations | None = None,
) -> RowGroup:
    """The rows the lake records for one scored request (no copy of the score arrays), with its reasons if any."""
    return RowGroup(
        request_id=request_id,
        model_version=batch.model_version,
        scored_at=batch.scored_at,
        prediction_ms=batch.prediction_ms,
        processing_ms=processing_ms,
        is_test=is_test,
        environment=environment,
        api_key_id=api_key_id,
        columns=columns,
        raw_numeric=batch.encoded.raw_numeric,
        matrix=batch.encoded.matrix,
        probabilities=batch.probabilities,
        scores=batch.scores,
        confidence=batch.confidence,
        features_used=batch.encoded.features_used,
        explanation=None if explanations is None else ranked_rows(explanations),
        source="online",
        run_id=None,
    )
