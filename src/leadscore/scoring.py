"""Score a batch of leads: raw columns -> encoded matrix -> model -> scores. Knows nothing of HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from leadscore.features.encode import Encoded, RawColumns, encode
from leadscore.features.spec import SCORES
from leadscore.model.bundle import Scorer

_SCORE_VALUES = np.asarray(SCORES, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """Everything known about a scored batch; the API response and the lake rows are both built from it."""

    scored_at: datetime
    encoded: Encoded
    probabilities: npt.NDArray[np.float64]  # (n, 5), rounded to 1e-6
    scores: npt.NDArray[np.int64]  # (n,), 1..5
    confidence: npt.NDArray[np.float64]  # (n,)
    encode_ms: float
    prediction_ms: float
    model_version: str

    @property
    def size(self) -> int:
        """Number of leads."""
        return int(self.scores.shape[0])


def score_columns(scorer: Scorer, columns: RawColumns, n: int, scored_at: datetime) -> ScoredBatch:
    """Encode and predict `n` leads given as columns."""
    t0 = time.perf_counter()
    encoded = encode(columns, n, scored_at)
    t1 = time.perf_counter()
    raw = scorer.predict_proba(encoded.matrix)
    t2 = time.perf_counter()
    best = np.argmax(raw, axis=1)
    probabilities = np.round(raw, 6, out=raw.astype(np.float64))
    return ScoredBatch(
        scored_at=scored_at,
        encoded=encoded,
        probabilities=probabilities,
        scores=_SCORE_VALUES[best],
        confidence=probabilities[np.arange(n), best],
        encode_ms=(t1 - t0) * 1000.0,
        prediction_ms=(t2 - t1) * 1000.0,
        model_version=scorer.version,
    )
