"""Figures of a run (success rate, average, p50/p95/p99, throughput), its threshold checks, text and JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leadscore.loadtest.client import Sample


@dataclass(frozen=True, slots=True)
class Stats:
    """Response-time figures of a set of requests (seconds) and their throughput."""

    requests: int
    successes: int
    success_rate: float
    average: float
    p50: float
    p95: float
    p99: float
    maximum: float
    wall_seconds: float
    throughput: float

    @classmethod
    def of(cls, samples: list[Sample], wall_seconds: float) -> Stats:
        """Figures of `samples`, sent over `wall_seconds`."""
        if not samples:
            return cls(0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, wall_seconds, 0.0)
        seconds = np.asarray([s.seconds for s in samples], dtype=np.float64)
        p50, p95, p99 = (float(v) for v in np.percentile(seconds, [50, 95, 99]))
        successes = sum(s.ok for s in samples)
        return cls(
            requests=len(samples),
            successes=successes,
            success_rate=successes / len(samples),
            average=float(seconds.mean()),
            p50=p50,
            p95=p95,
            p99=p99,
            maximum=float(seconds.max()),
            wall_seconds=wall_seconds,
            throughput=len(samples) / wall_seconds if wall_seconds > 0 else 0.0,
        )


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold: what was measured, the limit, and whether the limit holds."""

    name: str
    measured: float
    limit: float
    at_least: bool  # True: measured >= limit passes; False: measured < limit passes
    unit: str = "s"
    # Requests of the measured set that failed: a latency check cannot pass on them (a refused connection is fast).
    failed_requests: int = 0

    @classmethod
    def latency(cls, name: str, stats: Stats, limit: float) -> Check:
        """`stats.maximum` under `limit`, failing whatever the time when any of the requests failed."""
        return cls(name, stats.maximum, limit, at_least=False, failed_requests=stats.requests - stats.successes)

    @property
    def passed(self) -> bool:
        """Whether the measured value is within the limit (and, for latency, every request succeeded)."""
        if self.failed_requests:
            return False
        return self.measured >= self.limit if self.at_least else self.measured < self.limit

    def describe(self) -> str:
        """`PASS  name  measured  < limit`, with the failed requests when there are any."""
        sign = ">=" if self.at_least else "<"
        failed = f"  ({self.failed_requests} request(s) failed)" if self.failed_requests else ""
        return (
            f"{'PASS' if self.passed else 'FAIL'}  {self.name:<34} {format_value(self.measured, self.unit):>10} "
            f"{sign:>2} {format_value(self.limit, self.unit)}{failed}"
        )


def format_value(value: float, unit: str) -> str:
    """A measured value as the report prints it (ms or s, %, req/s)."""
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "req/s":
        return f"{value:.1f} req/s"
    return f"{value:g}"


@dataclass
class PhaseResult:
    """One phase of a suite: its requests, wall time, concurrency reached and its own checks."""

    name: str
    samples: list[Sample]
    wall_seconds: float
    max_in_flight: int
    checks: list[Check] = field(default_factory=list)
    concurrent: bool = False  # sent in parallel: throughput and concurrency are judged on such phases

    @property
    def stats(self) -> Stats:
        """Figures of this phase."""
        return Stats.of(self.samples, self.wall_seconds)

    @property
    def failed(self) -> list[Check]:
        """Checks of this phase that failed."""
        return [c for c in self.checks if not c.passed]

    def errors(self, limit: int = 5) -> list[str]:
        """The first few failed requests, for the report."""
        return [f"{s.request_id}: {s.status} {s.error}" for s in self.samples if not s.ok][:limit]


@dataclass
class Report:
    """A whole run: its phases, overall figures, every check and the verdict."""

    env: str
    url: str
    started_at: str
    model_version: str | None
    phases: list[PhaseResult]
    checks: list[Check]

    @property
    def overall(self) -> Stats:
        """Figures over every request of the run."""
        samples = [s for p in self.phases for s in p.samples]
        return Stats.of(samples, sum(p.wall_seconds for p in self.phases))

    @property
    def all_checks(self) -> list[Check]:
        """Phase checks, then run-wide checks."""
        return [c for p in self.phases for c in p.checks] + self.checks

    @property
    def passed(self) -> bool:
        """The verdict: every check holds."""
        return all(c.passed for c in self.all_checks)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the JSON report)."""

        def check(c: Check) -> dict[str, Any]:
            return {**asdict(c), "passed": c.passed}

        return {
            "env": self.env,
            "url": self.url,
            "started_at": self.started_at,
            "model_version": self.model_version,
            "passed": self.passed,
            "overall": asdict(self.overall),
            "phases": [
                {
                    "name": p.name,
                    "stats": asdict(p.stats),
                    "max_concurrency": p.max_in_flight,
                    "checks": [check(c) for c in p.checks],
                    "errors": p.errors(),
                }
                for p in self.phases
            ],
            "checks": [check(c) for c in self.checks],
        }

    def write_json(self, path: Path) -> None:
        """Write the JSON report."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")

    def text(self) -> str:
        """The human report: a table of phases, the checks, the verdict."""
        lines = [
            f"leadscore {self.env} {'load' if self.env == 'dev' else 'smoke'} test against {self.url} "
            f"(model {self.model_version or 'unknown'}, started {self.started_at})",
            f"{'phase':<22}{'requests':>9}{'success':>9}{'avg':>10}{'p50':>10}{'p95':>10}{'p99':>10}"
            f"{'max':>10}{'req/s':>8}{'conc':>6}",
        ]
        rows = [(p.name, p.stats, p.max_in_flight) for p in self.phases]
        rows.append(("overall", self.overall, max((p.max_in_flight for p in self.phases), default=0)))
        for name, s, concurrency in rows:
            lines.append(
                f"{name:<22}{s.requests:>9}{s.success_rate * 100:>8.1f}%"
                + "".join(f"{v * 1000:>7.1f} ms" for v in (s.average, s.p50, s.p95, s.p99, s.maximum))
                + f"{s.throughput:>8.1f}{concurrency:>6}"
            )
        lines.append("checks:")
        lines.extend(f"  {c.describe()}" for c in self.all_checks)
        for phase in self.phases:
            lines.extend(f"  error in {phase.name}: {e}" for e in phase.errors())
        lines.append(f"verdict: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)
