"""CloudWatch Embedded Metric Format: per-interval aggregates written to stdout as one JSON line per worker.

With the awslogs driver each line becomes CloudWatch metrics without an API call. Requests are folded into an
aggregate as they finish; every `interval` seconds one document goes out (never one per request), so the log
volume is constant whatever the traffic. Dimensions are Environment and ModelVersion only: ids of requests or
leads would make a metric per id.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final

import orjson

from leadscore.telemetry.logging import get_logger

log = get_logger("leadscore.emf")

DIMENSIONS: Final = ("Environment", "ModelVersion")
SCORE_METRICS: Final = tuple(f"LeadsScore{s}" for s in range(1, 6))
# Latency goes out as a histogram (Values/Counts), so CloudWatch can compute p50/p95/p99. Values are the
# geometric centres of log-spaced bins, 0.1 ms to about 67 s, 15 % apart (at most 7 % off the true value);
# 96 bins keep each document under EMF's limit of 100 values per metric whatever the spread.
_LATENCY_BASE_MS: Final = 0.1
_LATENCY_RATIO: Final = 1.15
LATENCY_BINS: Final = 96
_LOG_RATIO: Final = math.log(_LATENCY_RATIO)
_BIN_VALUES: Final = tuple(float(f"{_LATENCY_BASE_MS * _LATENCY_RATIO ** (i + 0.5):.4g}") for i in range(LATENCY_BINS))


def latency_bin(milliseconds: float) -> int:
    """Index of the latency bin that holds `milliseconds` (out-of-range values go to the first or last bin)."""
    if milliseconds <= _LATENCY_BASE_MS:
        return 0
    return min(int(math.log(milliseconds / _LATENCY_BASE_MS) / _LOG_RATIO), LATENCY_BINS - 1)


def bin_value(index: int) -> float:
    """The value a latency bin reports."""
    return _BIN_VALUES[index]


@dataclass(frozen=True, slots=True)
class LakeSnapshot:
    """The lake's figures at one moment: backlog now, and flush and failure counts since the process started."""

    backlog_rows: int = 0
    backlog_bytes: int = 0
    oldest_age_seconds: float = 0.0
    flushes: int = 0
    upload_failures: int = 0
    quarantined_segments: int = 0


class _Stats:
    """Min, max, sum and count of a stream of numbers (an EMF statistic set)."""

    __slots__ = ("count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, count: int, total: float, minimum: float, maximum: float) -> None:
        self.count += count
        self.total += total
        self.minimum = min(self.minimum, minimum)
        self.maximum = max(self.maximum, maximum)

    def as_emf(self) -> dict[str, float]:
        return {"Min": self.minimum, "Max": self.maximum, "Sum": round(self.total, 6), "Count": self.count}


class EmfAggregator:
    """Sums of one interval of one process; `document()` takes them and starts the next interval."""

    def __init__(self, namespace: str, environment: str, model_version: str = "unknown") -> None:
        self.namespace = namespace
        self.environment = environment
        self.model_version = model_version
        # Requests finish on the event loop but the lake reports from its own thread: one lock for both.
        self._lock = threading.Lock()
        self._last_lake = LakeSnapshot()
        self._reset()

    def _reset(self) -> None:
        self._requests = 0
        self._errors = 0
        self._client_errors = 0
        self._latency_bins = [0] * LATENCY_BINS
        self._latency = _Stats()
        self._leads = 0
        self._scores = [0] * len(SCORE_METRICS)
        self._confidence = _Stats()

    def add_request(self, status: int, seconds: float) -> None:
        """Fold in one finished request."""
        milliseconds = seconds * 1000.0
        index = latency_bin(milliseconds)
        with self._lock:
            self._requests += 1
            if status >= 500:
                self._errors += 1
            elif status >= 400:
                self._client_errors += 1
            self._latency_bins[index] += 1
            self._latency.add(1, milliseconds, milliseconds, milliseconds)

    def add_batch(
        self,
        score_counts: Sequence[int],
        confidence_sum: float,
        confidence_min: float,
        confidence_max: float,
    ) -> None:
        """Fold in one scored batch: leads per score 1..5 and its confidence figures."""
        leads = sum(score_counts)
        with self._lock:
            self._leads += leads
            for i, count in enumerate(score_counts):
                self._scores[i] += count
            self._confidence.add(leads, confidence_sum, confidence_min, confidence_max)

    def document(self, timestamp_ms: int, lake: LakeSnapshot | None = None) -> dict[str, Any]:
        """The EMF document of the interval that ends now; the aggregate starts again from zero."""
        with self._lock:
            metrics: dict[str, tuple[str, Any]] = {
                "Requests": ("Count", self._requests),
                "Errors": ("Count", self._errors),
                "ClientErrors": ("Count", self._client_errors),
                "Leads": ("Count", self._leads),
            }
            if self._latency.count:
                used = [i for i, count in enumerate(self._latency_bins) if count]
                latency = {
                    "Values": [_BIN_VALUES[i] for i in used],
                    "Counts": [self._latency_bins[i] for i in used],
                    **self._latency.as_emf(),
                }
                metrics["Latency"] = ("Milliseconds", latency)
            for name, count in zip(SCORE_METRICS, self._scores, strict=True):
                metrics[name] = ("Count", count)
            if self._confidence.count:
                # A statistic set: CloudWatch's Average of it is the mean confidence, weighted by leads.
                metrics["Confidence"] = ("None", self._confidence.as_emf())
            if lake is not None:
                metrics["LakeBacklogRows"] = ("Count", lake.backlog_rows)
                metrics["LakeBacklogBytes"] = ("Bytes", lake.backlog_bytes)
                metrics["LakeOldestUnflushedAge"] = ("Seconds", round(lake.oldest_age_seconds, 3))
                metrics["LakeQuarantinedSegments"] = ("Count", lake.quarantined_segments)
                metrics["LakeFlushes"] = ("Count", max(lake.flushes - self._last_lake.flushes, 0))
                metrics["LakeUploadFailures"] = (
                    "Count",
                    max(lake.upload_failures - self._last_lake.upload_failures, 0),
                )
                self._last_lake = lake
            self._reset()
        return {
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(DIMENSIONS)],
                        "Metrics": [{"Name": name, "Unit": unit} for name, (unit, _) in metrics.items()],
                    }
                ],
            },
            "Environment": self.environment,
            "ModelVersion": self.model_version,
            **{name: value for name, (_, value) in metrics.items()},
        }


def write_stdout(line: str) -> None:
    """Write one whole line to stdout and flush, so lines from workers sharing the stream stay whole."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class EmfEmitter:
    """Writes the aggregator's document every `interval` seconds, and once more when stopped."""

    def __init__(
        self,
        aggregator: EmfAggregator,
        interval: float,
        lake: Callable[[], LakeSnapshot | None] = lambda: None,
        write: Callable[[str], None] = write_stdout,
    ) -> None:
        self.aggregator = aggregator
        self.interval = interval
        self._lake = lake
        self._write = write
        self._task: asyncio.Task[None] | None = None

    def emit(self) -> None:
        """Write the document of the interval that ends now."""
        document = self.aggregator.document(int(time.time() * 1000), self._lake())
        self._write(orjson.dumps(document).decode())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.emit()
            except OSError as exc:
                # A closed or full stdout must not stop the service; the next interval tries again.
                log.warning("emf_write_failed", error=str(exc))

    def start(self) -> None:
        """Start emitting on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="emf-emitter")

    async def stop(self) -> None:
        """Stop, and write the last partial interval so nothing counted is lost."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.emit()


def drift_documents(
    namespace: str,
    environment: str,
    model_version: str,
    timestamp_ms: int,
    psi: Mapping[str, float],
    unknown_share: Mapping[str, float],
    low_confidence_share: float,
) -> list[dict[str, Any]]:
    """EMF documents of one drift measurement: the summary (alarmed on DriftMaxPsi), then PSI per input.

    The summary has the service's dimensions (Environment, ModelVersion); each input's PSI adds an Input dimension,
    one document per input (a document has one value per metric).
    """
    summary = {
        "DriftMaxPsi": round(max(psi.values(), default=0.0), 6),
        "DriftMaxUnknownShare": round(max(unknown_share.values(), default=0.0), 6),
        "DriftLowConfidenceShare": round(low_confidence_share, 6),
    }
    documents = [_document(namespace, list(DIMENSIONS), {"Environment": environment, "ModelVersion": model_version},
                           timestamp_ms, summary)]  # fmt: skip
    for name, value in psi.items():
        dimensions = {"Environment": environment, "ModelVersion": model_version, "Input": name}
        documents.append(
            _document(namespace, list(dimensions), dimensions, timestamp_ms, {"DriftPsi": round(value, 6)})
        )
    return documents


def _document(
    namespace: str, names: list[str], dimensions: dict[str, str], timestamp_ms: int, metrics: dict[str, float]
) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [names],
                    "Metrics": [{"Name": k, "Unit": "None"} for k in metrics],
                }
            ],
        },
        **dimensions,
        **metrics,
    }
