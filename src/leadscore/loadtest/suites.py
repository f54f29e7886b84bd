"""The suites: dev runs the full load test, prod a conservative smoke test of 1-2 leads per request.

Every request carries an id the lake marks as test traffic: `load-test-{num}-{timestamp}` for load,
`prod-verification` for health and verification, `prod-baseline-test` for the performance baseline.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from leadscore.loadtest.client import LoadClient, Sample, check_base_url
from leadscore.loadtest.data import synthetic_leads
from leadscore.loadtest.report import Check, PhaseResult, Report, Stats
from leadscore.loadtest.thresholds import THRESHOLDS, TargetEnv, Thresholds

PROD_VERIFICATION: Final = "prod-verification"
PROD_BASELINE: Final = "prod-baseline-test"
BATCH_SIZES: Final = (5, 10, 25, 50)
CONCURRENT: Final = (20, 5)  # requests, at most this many at once
STRESS: Final = (50, 10)
LEADS_PER_LOAD_REQUEST: Final = 10
MAX_BATCH: Final = 500
VARIETY_SEEDS: Final = (101, 202, 303, 404)
VARIETY_LEADS: Final = 50


@dataclass
class RunContext:
    """What the phases of one run share: the client, the limits, the id counter, the leads."""

    client: LoadClient
    env: TargetEnv
    thresholds: Thresholds
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _pool: list[dict[str, Any]] = field(default_factory=list)

    def load_id(self) -> str:
        """The next load-test request id."""
        return f"load-test-{next(self._numbers)}-{int(self.started.timestamp())}"

    def leads(self, n: int) -> list[dict[str, Any]]:
        """`n` realistic leads (one pool per run, generated once)."""
        if len(self._pool) < n:
            self._pool = synthetic_leads(max(n, MAX_BATCH), seed=int(self.started.timestamp()) % 10_000)
        return self._pool[:n]


async def timed(
    ctx: RunContext, name: str, requests: Sequence[Callable[[], Awaitable[Sample]]], concurrency: int = 1
) -> PhaseResult:
    """Send `requests`, at most `concurrency` at once; the phase's wall time and concurrency reached."""
    ctx.client.reset_concurrency()
    gate = asyncio.Semaphore(concurrency)

    async def one(request: Callable[[], Awaitable[Sample]]) -> Sample:
        async with gate:
            return await request()

    start = time.perf_counter()
    samples = await asyncio.gather(*(one(r) for r in requests))
    return PhaseResult(name, list(samples), time.perf_counter() - start, ctx.client.max_in_flight)


def _score(
    ctx: RunContext, phase: str, leads: list[dict[str, Any]], request_id: str
) -> Callable[[], Awaitable[Sample]]:
    return lambda: ctx.client.score(phase, leads, request_id)


def latency_check(name: str, stats: Stats, limit: float | None) -> list[Check]:
    """The slowest request of a phase under `limit` (nothing when the environment sets no limit)."""
    return [] if limit is None else [Check.latency(name, stats, limit)]


# --- dev: the full load test ---------------------------------------------------------------------------


async def single_request(ctx: RunContext) -> PhaseResult:
    """One lead in one request, under one second."""
    request_id = PROD_VERIFICATION if ctx.env is TargetEnv.PROD else ctx.load_id()
    result = await timed(ctx, "single_request", [_score(ctx, "single_request", ctx.leads(1), request_id)])
    result.checks = latency_check("single request time", result.stats, ctx.thresholds.max_single_seconds)
    return result


async def batch_processing(ctx: RunContext) -> PhaseResult:
    """Batches of 5 to 50 leads, one after another."""
    return await timed(
        ctx, "batch_processing", [_score(ctx, "batch_processing", ctx.leads(n), ctx.load_id()) for n in BATCH_SIZES]
    )


async def _parallel(ctx: RunContext, name: str, requests: int, concurrency: int) -> PhaseResult:
    leads = ctx.leads(LEADS_PER_LOAD_REQUEST)
    result = await timed(ctx, name, [_score(ctx, name, leads, ctx.load_id()) for _ in range(requests)], concurrency)
    result.concurrent = True
    return result


async def concurrent_load(ctx: RunContext) -> PhaseResult:
    """20 requests of 10 leads, 5 at a time."""
    return await _parallel(ctx, "concurrent_load", *CONCURRENT)


async def stress_test(ctx: RunContext) -> PhaseResult:
    """50 requests of 10 leads, 10 at a time."""
    return await _parallel(ctx, "stress_test", *STRESS)


async def maximum_batch(ctx: RunContext) -> PhaseResult:
    """One request with the most leads the contract allows (500)."""
    result = await timed(ctx, "maximum_batch", [_score(ctx, "maximum_batch", ctx.leads(MAX_BATCH), ctx.load_id())])
    result.checks = latency_check("maximum batch time", result.stats, ctx.thresholds.max_p95_seconds)
    return result


async def data_variety(ctx: RunContext) -> PhaseResult:
    """Leads from four independent draws; a sound model gives them more than one score."""
    draws = [synthetic_leads(VARIETY_LEADS, seed, prefix=f"variety-{seed}") for seed in VARIETY_SEEDS]
    result = await timed(ctx, "data_variety", [_score(ctx, "data_variety", leads, ctx.load_id()) for leads in draws])
    distinct = len({score for s in result.samples for score in s.scores})
    result.checks = [Check("distinct scores over varied leads", distinct, 2, at_least=True, unit="")]
    return result


# --- prod: the smoke test ------------------------------------------------------------------------------


async def health_check(ctx: RunContext) -> PhaseResult:
    """The health endpoint answers ok, under 500 ms."""
    result = await timed(ctx, "health_check", [lambda: ctx.client.health("health_check", PROD_VERIFICATION)])
    result.checks = latency_check("health check time", result.stats, ctx.thresholds.max_health_seconds)
    return result


async def basic_batch(ctx: RunContext) -> PhaseResult:
    """A batch of two leads, under ten seconds."""
    result = await timed(ctx, "basic_batch", [_score(ctx, "basic_batch", ctx.leads(2), PROD_VERIFICATION)])
    result.checks = latency_check("batch time", result.stats, ctx.thresholds.max_batch_seconds)
    return result


def prediction_problem(body: dict[str, Any]) -> str | None:
    """What is inconsistent in a scored lead (probabilities, score, confidence, model version), or None."""
    if not body.get("model_version"):
        return "no model_version"
    for result in body["scores"]:
        probabilities = result.get("probabilities") or []
        if len(probabilities) != 5 or not math.isclose(sum(probabilities), 1.0, abs_tol=1e-3):
            return f"probabilities {probabilities} do not sum to 1"
        best = max(range(5), key=lambda i: probabilities[i])
        if result["score"] != best + 1 or not math.isclose(result["confidence"], probabilities[best], abs_tol=1e-6):
            return "score or confidence is not the most probable class"
    return None


async def end_to_end_prediction(ctx: RunContext) -> PhaseResult:
    """One lead through the whole path; the answer is checked field by field."""
    lead = ctx.leads(1)
    result = await timed(
        ctx,
        "end_to_end_prediction",
        [lambda: ctx.client.score("end_to_end_prediction", lead, PROD_VERIFICATION, keep_body=True)],
    )
    sample = result.samples[0]
    problem = prediction_problem(sample.body) if sample.ok and sample.body else None
    if problem:
        result.samples = [replace(sample, ok=False, error=problem)]
    return result


async def performance_baseline(ctx: RunContext) -> PhaseResult:
    """One lead under the baseline id, under ten seconds."""
    result = await timed(
        ctx, "performance_baseline", [_score(ctx, "performance_baseline", ctx.leads(1), PROD_BASELINE)]
    )
    result.checks = latency_check("performance baseline time", result.stats, ctx.thresholds.max_baseline_seconds)
    return result


Phase = Callable[[RunContext], Awaitable[PhaseResult]]
SUITES: Final[dict[TargetEnv, tuple[Phase, ...]]] = {
    TargetEnv.DEV: (single_request, batch_processing, concurrent_load, stress_test, maximum_batch, data_variety),
    TargetEnv.PROD: (health_check, single_request, basic_batch, end_to_end_prediction, performance_baseline),
}
PHASES: Final[dict[str, Phase]] = {p.__name__: p for suite in SUITES.values() for p in suite}


def run_checks(thresholds: Thresholds, phases: Sequence[PhaseResult]) -> list[Check]:
    """The environment's limits over every request of `phases` (throughput over the concurrent ones)."""
    samples = [s for p in phases for s in p.samples]
    overall = Stats.of(samples, sum(p.wall_seconds for p in phases))
    checks = [Check("success rate", overall.success_rate, thresholds.min_success_rate, at_least=True, unit="%")]
    failed = overall.requests - overall.successes
    if thresholds.max_average_seconds is not None:
        checks.append(
            Check(
                "average response time", overall.average, thresholds.max_average_seconds, False, failed_requests=failed
            )
        )
    if thresholds.max_p95_seconds is not None:
        checks.append(
            Check("p95 response time", overall.p95, thresholds.max_p95_seconds, False, failed_requests=failed)
        )
    parallel = [p for p in phases if p.concurrent]
    if parallel and thresholds.min_throughput_rps is not None:
        load = Stats.of([s for p in parallel for s in p.samples], sum(p.wall_seconds for p in parallel))
        checks.append(
            Check("throughput under concurrent load", load.throughput, thresholds.min_throughput_rps, True, "req/s")
        )
    if parallel and thresholds.min_concurrency is not None:
        reached = max(p.max_in_flight for p in parallel)
        checks.append(Check("concurrent requests in flight", reached, thresholds.min_concurrency, True, ""))
    return checks


async def run_suite(
    env: TargetEnv,
    url: str,
    api_key: str | None = None,
    phases: Sequence[str] | None = None,
    request_timeout: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Report:
    """Run the environment's suite (or the named phases of it) against `url` and judge it."""
    url = check_base_url(url)
    thresholds = THRESHOLDS[env]
    chosen = SUITES[env] if phases is None else tuple(PHASES[name] for name in phases)
    async with LoadClient(url, api_key, timeout=request_timeout, transport=transport) as client:
        ctx = RunContext(client, env, thresholds)
        await client.warm_up()
        results = [await phase(ctx) for phase in chosen]
    versions = [s.model_version for r in results for s in r.samples if s.model_version]
    return Report(
        env=env.value,
        url=url,
        started_at=ctx.started.isoformat(timespec="seconds"),
        model_version=versions[0] if versions else None,
        phases=results,
        checks=run_checks(thresholds, results),
    )
