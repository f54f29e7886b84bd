"""Scoring: encode + predict, and the micro-batcher that shares model calls between small requests."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from leadscore.model.bundle import Scorer, load_bundle
from leadscore.scoring import SMALL_REQUEST_ROWS, ExplainQueue, PredictionBatcher, score_columns


def _columns(n: int) -> dict[str, list[object]]:
    from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns  # noqa: PLC0415

    return to_columns(ScoreRequest.model_validate({"leads": [EXAMPLE_LEAD] * n}).leads)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_large_requests_skip_the_batcher(tiny_scorer: Scorer) -> None:
    """A request above the small-request size is scored on its own, at once."""
    batcher = PredictionBatcher(tiny_scorer, small_rows=4)
    batch = asyncio.run(batcher.score(_columns(10), 10, NOW))
    assert batch.probabilities.shape == (10, 5)
    assert batcher.batched_requests == 0
    assert batcher.calls == 1


def test_batch_is_scored_when_it_reaches_its_row_cap(tiny_scorer: Scorer) -> None:
    """Once pending leads reach the cap, the batch is scored without waiting for the loop turn."""
    batcher = PredictionBatcher(tiny_scorer, small_rows=4, max_rows=6)

    async def run() -> None:
        await asyncio.gather(*(batcher.score(_columns(3), 3, NOW) for _ in range(4)))

    asyncio.run(run())
    assert batcher.calls == 2
    assert batcher.batched_requests == 4


def test_batched_scoring_matches_direct_scoring(tiny_scorer: Scorer) -> None:
    """The batched path reports the same scores as the direct one."""
    from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns  # noqa: PLC0415
    from leadscore.scoring import score_columns  # noqa: PLC0415

    columns = to_columns(ScoreRequest.model_validate({"leads": [EXAMPLE_LEAD]}).leads)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    direct = score_columns(tiny_scorer, columns, 1, now)
    batched = asyncio.run(PredictionBatcher(tiny_scorer).score(columns, 1, now))
    np.testing.assert_array_equal(direct.probabilities, batched.probabilities)
    assert batched.scores.tolist() == direct.scores.tolist()
    assert batched.confidence[0] == pytest.approx(direct.confidence[0])


def test_small_requests_scored_together_match_each_scored_alone(tiny_scorer: Scorer) -> None:
    """Requests encoded and predicted together get exactly what each would get alone: rows, warnings, recency."""
    from datetime import timedelta  # noqa: PLC0415

    from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns  # noqa: PLC0415
    from leadscore.scoring import score_columns  # noqa: PLC0415

    bodies = [
        [EXAMPLE_LEAD],
        [{"industry": "Basket weaving", "website_sessions": 0}, {**EXAMPLE_LEAD, "geography": "Atlantis"}],
        [{}],
        [{**EXAMPLE_LEAD, "seniority_level": "Galactic"}, {}, EXAMPLE_LEAD],
    ]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    requests = [
        (to_columns(ScoreRequest.model_validate({"leads": leads}).leads), len(leads), start + timedelta(days=30 * i))
        for i, leads in enumerate(bodies)
    ]
    batcher = PredictionBatcher(tiny_scorer)

    async def run() -> list[object]:
        return await asyncio.gather(*(batcher.score(columns, n, at) for columns, n, at in requests))

    together = asyncio.run(run())
    assert batcher.calls == 1
    assert batcher.batched_requests == len(requests)
    for (columns, n, at), batch in zip(requests, together, strict=True):
        alone = score_columns(tiny_scorer, columns, n, at)
        assert batch.scored_at == at
        np.testing.assert_array_equal(batch.encoded.matrix, alone.encoded.matrix)
        np.testing.assert_array_equal(batch.encoded.raw_numeric, alone.encoded.raw_numeric)
        np.testing.assert_array_equal(batch.encoded.features_used, alone.encoded.features_used)
        assert batch.encoded.warnings == alone.encoded.warnings
        np.testing.assert_allclose(batch.probabilities, alone.probabilities, atol=1e-6)
        assert batch.scores.tolist() == alone.scores.tolist()


def test_errors_of_a_shared_scoring_reach_every_request(tiny_scorer: Scorer) -> None:
    """If scoring the pending requests together fails, each of them gets the error rather than hanging."""
    from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns  # noqa: PLC0415

    class Broken(Scorer):
        def predict_proba(self, matrix: np.ndarray) -> np.ndarray:  # noqa: ARG002 - same signature as Scorer
            raise RuntimeError("model exploded")

    batcher = PredictionBatcher(Broken(tiny_scorer.booster, tiny_scorer.manifest))
    columns = to_columns(ScoreRequest.model_validate({"leads": [EXAMPLE_LEAD]}).leads)
    now = datetime(2026, 1, 1, tzinfo=UTC)

    async def run() -> list[object]:
        return await asyncio.gather(*(batcher.score(columns, 1, now) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(run()))


def test_crm_forms_score_as_their_vocabulary_values(tiny_scorer: Scorer) -> None:
    """Leads with CRM picklist forms get the scores of the same leads written in the vocabulary, without warnings."""
    from leadscore.scoring import score_columns  # noqa: PLC0415

    canonical = _columns(2)
    crm = {**canonical}
    crm["company_size"] = ["10,001+", "5001-10000"]
    crm["seniority_level"] = ["c_level", "C-Suite"]
    crm["geography"] = ["north_america", "NA"]
    assert canonical["company_size"] == ["Enterprise"] * 2
    a = score_columns(tiny_scorer, canonical, 2, NOW)
    b = score_columns(tiny_scorer, crm, 2, NOW)
    assert np.array_equal(a.encoded.matrix, b.encoded.matrix)
    assert b.encoded.warnings == ()


def test_values_still_unknown_keep_their_warning(tiny_scorer: Scorer) -> None:
    """A value no map knows is scored as missing and warned about, as before."""
    from leadscore.scoring import score_columns  # noqa: PLC0415

    columns = {**_columns(1), "industry": ["Underwater Basket Weaving"]}
    warnings = score_columns(tiny_scorer, columns, 1, NOW).encoded.warnings
    assert [(w.field, w.value) for w in warnings] == [("industry", "Underwater Basket Weaving")]


class HoldLarge:
    """Wraps the real explainer; a call on more than 64 rows waits, off the event loop, until released."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.large_started = threading.Event()
        self.release = threading.Event()
        self.large_running = 0
        self.most_large_at_once = 0
        self._lock = threading.Lock()

    def contributions(self, matrix: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Explain; a large batch first counts itself and holds until released."""
        large = matrix.shape[0] > SMALL_REQUEST_ROWS
        if large:
            with self._lock:
                self.large_running += 1
                self.most_large_at_once = max(self.most_large_at_once, self.large_running)
            self.large_started.set()
            assert self.release.wait(30), "the test never released the explanation"
        try:
            return self.inner.contributions(matrix, classes)  # type: ignore[attr-defined]
        finally:
            if large:
                with self._lock:
                    self.large_running -= 1


def test_large_explanations_queue_and_small_ones_pass(tiny_bundle) -> None:
    """A second 500-lead explanation waits for the first; a 1-lead one is answered meanwhile."""
    scorer = load_bundle(tiny_bundle)
    held = HoldLarge(scorer.explainer)
    scorer.explainer = held  # type: ignore[assignment]
    queue = ExplainQueue(at_once=1)
    large = score_columns(scorer, _columns(500), 500, NOW)
    small = score_columns(scorer, _columns(1), 1, NOW)

    async def run() -> None:
        first = asyncio.create_task(queue.explain(scorer, large))
        assert await asyncio.to_thread(held.large_started.wait, 30)
        second = asyncio.create_task(queue.explain(scorer, large))
        deadline = time.monotonic() + 30
        while queue.waiting != 1:
            assert time.monotonic() < deadline, "the second explanation never queued"
            await asyncio.sleep(0.01)
        assert (await queue.explain(scorer, small)).size == 1
        assert not first.done()
        held.release.set()
        assert [e.size for e in await asyncio.gather(first, second)] == [500, 500]

    asyncio.run(run())
    assert held.most_large_at_once == 1
