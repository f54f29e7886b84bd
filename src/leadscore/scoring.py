"""Score a batch of leads: raw columns -> encoded matrix -> model -> scores. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from leadscore.features.encode import Encoded, LeadArrays, RawColumns, encode_arrays
from leadscore.features.spec import SCORES
from leadscore.model.bundle import Scorer
from leadscore.model.reasons import Explanations, explain

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

    def rows(self, start: int, end: int, scored_at: datetime) -> ScoredBatch:
        """Leads start..end-1 of a batch scored for several requests: the batch of the one scored at `scored_at`."""
        return ScoredBatch(
            scored_at=scored_at,
            encoded=self.encoded.rows(start, end),
            probabilities=self.probabilities[start:end],
            scores=self.scores[start:end],
            confidence=self.confidence[start:end],
            encode_ms=self.encode_ms,
            prediction_ms=self.prediction_ms,
            model_version=self.model_version,
        )


def score_columns(
    scorer: Scorer,
    columns: RawColumns,
    n: int,
    scored_at: datetime,
    now_per_lead: npt.NDArray[np.float64] | None = None,
) -> ScoredBatch:
    """`score_arrays` of `n` leads given as validated Python columns."""
    return score_arrays(scorer, LeadArrays.of(columns, n), scored_at, now_per_lead)


def score_arrays(
    scorer: Scorer,
    leads: LeadArrays,
    scored_at: datetime,
    now_per_lead: npt.NDArray[np.float64] | None = None,
    *,
    warn: bool = True,
) -> ScoredBatch:
    """Encode and predict leads given as arrays (`now_per_lead`: each lead's scoring time, see `encode_arrays`).

    `warn=False` skips the per-lead warnings of unknown values (a table scored offline reports none).
    """
    t0 = time.perf_counter()
    encoded = encode_arrays(leads, scored_at, now_per_lead, scorer.categories, warn=warn)
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
        confidence=probabilities[np.arange(raw.shape[0]), best],
        encode_ms=(t1 - t0) * 1000.0,
        prediction_ms=(t2 - t1) * 1000.0,
        model_version=scorer.version,
    )


async def explain_scored(scorer: Scorer, batch: ScoredBatch) -> Explanations:
    """Why each lead of `batch` got its score, computed in a worker thread.

    The kernel releases the GIL, so the event loop keeps answering other requests while a 500-lead batch is
    explained (about half a millisecond per lead, `bench/README.md`).
    """
    # The explainer is read in the thread too: built at the first explanation (unless at start), it must not hold
    # the event loop for the second or so its build takes.
    return await asyncio.to_thread(lambda: explain(scorer.explainer, batch.encoded.matrix, batch.scores - SCORES[0]))


SMALL_REQUEST_ROWS: Final = 64
MAX_BATCH_ROWS: Final = 512


class ExplainQueue:
    """Large explanations run `at_once` at a time per worker, first come first served; small ones go straight on.

    Explaining takes a core for about half a millisecond per lead (a 500-lead request: a quarter of a second). In
    the loop's default executor (cpu count + 4 threads, shared with every other `to_thread`) many large
    explanations would share the cores at once and all finish late together; queued, each finishes in its own time
    at the same throughput. `at_once` defaults to the cores this process may use, so one worker that gets the large
    requests still uses every core. A batch of up to `small_rows` leads (milliseconds) never waits behind them.
    """

    def __init__(self, at_once: int | None = None, small_rows: int = SMALL_REQUEST_ROWS) -> None:
        self.small_rows = small_rows
        self.at_once = at_once or len(os.sched_getaffinity(0))
        self._large = asyncio.Semaphore(self.at_once)
        self.waiting = 0  # large explanations queued behind the running ones

    async def explain(self, scorer: Scorer, batch: ScoredBatch) -> Explanations:
        """`explain_scored`, queued when the batch is large."""
        if batch.size <= self.small_rows:
            return await explain_scored(scorer, batch)
        self.waiting += 1
        try:
            await self._large.acquire()
        finally:
            self.waiting -= 1
        try:
            return await explain_scored(scorer, batch)
        finally:
            self._large.release()


class PredictionBatcher:
    """Adaptive micro-batching: small requests reaching the model in one event-loop turn are scored together.

    Encoding and the model call both have a large fixed cost per call and a small cost per lead (figures in
    `bench/README.md`), so 16 one-lead requests scored together cost little more than one. The leads of the
    small requests pending at once are encoded as one batch (each lead keeps its own request's scoring time),
    predicted in one call, and the result is split back per request. Nothing waits for a timer: the batch is
    scored as soon as the loop has run the requests already ready, so an idle server answers a lone request with
    no added delay. Large requests go straight through.
    """

    def __init__(self, scorer: Scorer, small_rows: int = SMALL_REQUEST_ROWS, max_rows: int = MAX_BATCH_ROWS) -> None:
        self.scorer = scorer
        self.small_rows = small_rows
        self.max_rows = max_rows
        self._pending: list[_ToScore] = []
        self._rows = 0
        self.calls = 0
        self.batched_requests = 0
        self.explanations = ExplainQueue()  # the batches this one scored, explained when asked

    async def score(self, columns: RawColumns, n: int, scored_at: datetime) -> ScoredBatch:
        """`score_columns` of `n` leads, shared with the other small requests of the same loop turn."""
        if n > self.small_rows:
            self.calls += 1
            return score_columns(self.scorer, columns, n, scored_at)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScoredBatch] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._score_pending)
        self._pending.append(_ToScore(columns, n, scored_at, future))
        self._rows += n
        if self._rows >= self.max_rows:
            self._score_pending()
        return await future

    def _score_pending(self) -> None:
        pending, self._pending, self._rows = self._pending, [], 0
        if not pending:
            return
        self.calls += 1
        self.batched_requests += len(pending)
        try:
            batch = _score_together(self.scorer, pending)
        except Exception as exc:  # noqa: BLE001 - every waiting request must get the error, not hang
            for request in pending:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        start = 0
        for request in pending:
            end = start + request.size
            if not request.future.done():
                request.future.set_result(batch.rows(start, end, request.scored_at))
            start = end


@dataclass(frozen=True, slots=True)
class _ToScore:
    columns: RawColumns
    size: int
    scored_at: datetime
    future: asyncio.Future[ScoredBatch]


def _score_together(scorer: Scorer, pending: list[_ToScore]) -> ScoredBatch:
    """One batch for the leads of several requests, in request order."""
    if len(pending) == 1:
        only = pending[0]
        return score_columns(scorer, only.columns, only.size, only.scored_at)
    leads = LeadArrays.joined([(request.columns, request.size) for request in pending])
    now_per_lead = np.repeat([r.scored_at.timestamp() for r in pending], [r.size for r in pending])
    return score_arrays(scorer, leads, pending[0].scored_at, now_per_lead)
