"""The published pass/fail thresholds of each environment's run."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TargetEnv(StrEnum):
    """Which suite runs: the full load test (dev) or the conservative smoke test (prod)."""

    DEV = "dev"
    PROD = "prod"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Limits a run must meet; None means the environment sets no such limit."""

    min_success_rate: float
    max_average_seconds: float | None = None
    max_p95_seconds: float | None = None
    min_throughput_rps: float | None = None
    min_concurrency: int | None = None
    max_single_seconds: float | None = None
    max_batch_seconds: float | None = None
    max_health_seconds: float | None = None
    max_baseline_seconds: float | None = None


DEV = Thresholds(
    min_success_rate=0.95,
    max_average_seconds=2.0,
    max_p95_seconds=5.0,
    min_throughput_rps=2.0,
    min_concurrency=5,
    max_single_seconds=1.0,
)
PROD = Thresholds(
    min_success_rate=0.90,
    max_single_seconds=1.0,
    max_batch_seconds=10.0,
    max_health_seconds=0.5,
    max_baseline_seconds=10.0,
)
THRESHOLDS = {TargetEnv.DEV: DEV, TargetEnv.PROD: PROD}
