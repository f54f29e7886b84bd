"""Prometheus metrics: what each request records, the lake's figures, and the `/metrics` exposition.

The metrics live at module level, as prometheus_client intends: under `leadscore serve` (see
telemetry.multiprocess) every process writes its own mmap files and a scrape sums them, so the counts of all
workers add up. The lake reports through `set_lake_backlog`, `observe_lake_flush` and
`observe_lake_upload_failure`; the app reports each finished request through a `Recorder`.

A finished request's figures are gathered in this process and written to Prometheus in bulk, at most
`FLUSH_SECONDS` later: the cost is a few calls per series and flush, whatever the number of requests or leads.
Scores are counted with one `np.bincount` and the confidence histogram is filled from one `np.searchsorted` +
`np.bincount` (see `_compat`).

Telemetry sits below scoring: it takes what it records as plain values, or as the small protocols below,
which a scored batch satisfies without this module importing it.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
    write_to_textfile,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from leadscore.features.picklists import picklist_key
from leadscore.features.spec import CATEGORY_FIELDS, SCORES
from leadscore.telemetry._compat import add_bucket_counts, upper_bounds
from leadscore.telemetry.emf import EmfAggregator, LakeSnapshot
from leadscore.telemetry.multiprocess import MULTIPROC_ENV, alive, file_pid

UNMATCHED_ROUTE: Final = "<unmatched>"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Chosen around the published thresholds: health < 0.5 s, single < 1 s, average < 2 s, p95 < 5 s, batch < 10 s.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MODEL_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# The most probable of five classes is never below 0.2.
CONFIDENCE_BUCKETS: Final = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
FLUSH_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Unknown values are whatever callers send: only the first few per field get a label of their own, so the
# series stay bounded (fields x MAX_VALUE_LABELS x workers); the rest are counted together.
MAX_VALUE_LABELS: Final = 25
MAX_VALUE_LABEL_LENGTH: Final = 48
OTHER_VALUE: Final = "_other"
_CATEGORY_FIELDS: Final = frozenset(f.name for f in CATEGORY_FIELDS)

# Used when the process is not in multiprocess mode (tests, `uvicorn` started by hand).
REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

HTTP_DURATION: Final = Histogram(
    "leadscore_http_request_duration_seconds",
    "Time from request start to the end of the response, by method, route template and status; "
    "its _count is the number of requests.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
LEADS: Final = Counter("leadscore_leads_scored_total", "Leads scored.", registry=REGISTRY)
SCORES_TOTAL: Final = Counter(
    "leadscore_lead_scores_total", "Leads scored, by the score they got (1..5).", ["score"], registry=REGISTRY
)
CONFIDENCE: Final = Histogram(
    "leadscore_score_confidence_ratio",
    "Probability of the returned score, one observation per lead.",
    buckets=CONFIDENCE_BUCKETS,
    registry=REGISTRY,
)
MODEL_SECONDS: Final = Histogram(
    "leadscore_model_inference_seconds",
    "Model prediction time per scored batch (encoding excluded); its _count is the number of batches.",
    buckets=MODEL_BUCKETS,
    registry=REGISTRY,
)
WARNINGS: Final = Counter(
    "leadscore_lead_warnings_total",
    "Input problems that did not stop a lead being scored, by field.",
    ["field"],
    registry=REGISTRY,
)
UNKNOWN_VALUES: Final = Counter(
    "leadscore_unknown_category_values_total",
    "Categorical values the model's category map does not know (the lead is scored without them), by field and "
    f'value (case-folded); past the first {MAX_VALUE_LABELS} values of a field in a process, as value="{OTHER_VALUE}".',
    ["field", "value"],
    registry=REGISTRY,
)
MODEL_INFO: Final = Gauge(
    "leadscore_model_info",
    "1 for the model version a live worker serves.",
    ["model_version"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
LAKE_BACKLOG_ROWS: Final = Gauge(
    "leadscore_lake_backlog_rows",
    "Acknowledged rows not yet in the lake (all live workers).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
LAKE_BACKLOG_BYTES: Final = Gauge(
    "leadscore_lake_backlog_bytes",
    "Spool bytes not yet in the lake (all live workers).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
LAKE_OLDEST_AGE: Final = Gauge(
    "leadscore_lake_oldest_unflushed_age_seconds",
    "Age of the oldest row not yet in the lake, when last reported (oldest over live workers; 0 when none).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
LAKE_QUARANTINED: Final = Gauge(
    "leadscore_lake_quarantined_segments",
    "Spool segments kept in quarantine (part of them could not be read); `leadscore lake requeue` re-drives them.",
    multiprocess_mode="max",
    registry=REGISTRY,
)
LAKE_FLUSHES: Final = Counter("leadscore_lake_flushes_total", "Spool segments written to the lake.", registry=REGISTRY)
LAKE_FLUSHED_ROWS: Final = Counter("leadscore_lake_flushed_rows_total", "Rows written to the lake.", registry=REGISTRY)
LAKE_FILES: Final = Counter(
    "leadscore_lake_files_written_total", "Parquet files written to the lake.", registry=REGISTRY
)
LAKE_FLUSH_SECONDS: Final = Histogram(
    "leadscore_lake_flush_duration_seconds",
    "Time to turn one spool segment into lake files.",
    buckets=FLUSH_BUCKETS,
    registry=REGISTRY,
)
LAKE_UPLOAD_FAILURES: Final = Counter(
    "leadscore_lake_upload_failures_total", "Failed uploads to the lake's store (each is retried).", registry=REGISTRY
)

# Drift, set by `leadscore drift export` (a scheduled run; "mostrecent": the last run's figures are the ones that hold).
DRIFT_PSI: Final = Gauge(
    "leadscore_drift_psi",
    "Population stability index of an input in production against the model's training data (above 0.25: drift).",
    ["field"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
DRIFT_MAX_PSI: Final = Gauge(
    "leadscore_drift_max_psi",
    "Largest population stability index over the model's inputs at the last drift export.",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
DRIFT_UNKNOWN_SHARE: Final = Gauge(
    "leadscore_drift_unknown_share",
    "Share of a categorical input's given values that the model's category map does not know.",
    ["field"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
DRIFT_LOW_CONFIDENCE_SHARE: Final = Gauge(
    "leadscore_drift_low_confidence_share",
    "Share of production leads scored with confidence below 0.5 over the last drift export's range.",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
_DRIFT_GAUGES: Final = (DRIFT_PSI, DRIFT_MAX_PSI, DRIFT_UNKNOWN_SHARE, DRIFT_LOW_CONFIDENCE_SHARE)

_SCORE_CHILDREN: Final = tuple(SCORES_TOTAL.labels(score=str(s)) for s in SCORES)
_CONFIDENCE_BOUNDS: Final = np.asarray(CONFIDENCE_BUCKETS, dtype=np.float64)


def multiprocess_mode() -> bool:
    """Whether this process writes its metrics to files that a scrape of any worker sums."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


# --- per request ---------------------------------------------------------------------------------------


def bucket_counts(bounds: npt.NDArray[np.float64], observations: npt.NDArray[np.float64]) -> list[int]:
    """How many observations fall in each histogram bucket (`le` bounds, then +Inf), in two array calls."""
    # side="left": v lands in the first bucket with v <= bound, Prometheus's `le`; past the last bound: +Inf.
    counts: list[int] = np.bincount(
        np.searchsorted(bounds, observations, side="left"), minlength=bounds.size + 1
    ).tolist()
    return counts


def observe_many(histogram: Histogram, observations: npt.NDArray[np.float64]) -> None:
    """`histogram.observe(v)` for every v, in a few calls whatever the number of values."""
    if observations.size:
        bounds = np.asarray(upper_bounds(histogram), dtype=np.float64)
        add_bucket_counts(histogram, bucket_counts(bounds, observations), float(observations.sum()))


class InputWarning(Protocol):
    """What the metrics read of one input warning: the field and the value it is about."""

    @property
    def field(self) -> str:
        """The input field."""
        ...

    @property
    def value(self) -> str:
        """The value as given."""
        ...


class EncodedInputs(Protocol):
    """What the metrics read of an encoded batch: its warnings."""

    @property
    def warnings(self) -> tuple[InputWarning, ...]:
        """One per input problem that did not stop a lead being scored."""
        ...


class Scored(Protocol):
    """What the metrics read of a scored batch (scoring's ScoredBatch is one)."""

    @property
    def size(self) -> int:
        """Leads in the batch."""
        ...

    @property
    def scores(self) -> npt.NDArray[np.int64]:
        """Score per lead, 1..5."""
        ...

    @property
    def confidence(self) -> npt.NDArray[np.float64]:
        """Probability of the score, per lead."""
        ...

    @property
    def prediction_ms(self) -> float:
        """Model time of the batch."""
        ...

    @property
    def encoded(self) -> EncodedInputs:
        """The encoder's output for the batch."""
        ...


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What the metrics need from one scored batch, computed once with a few array operations."""

    leads: int
    score_counts: list[int]  # leads per score 1..5
    confidence_buckets: list[int]  # leads per confidence bucket (CONFIDENCE_BUCKETS, then +Inf)
    confidence_sum: float
    confidence_min: float
    confidence_max: float
    prediction_seconds: float
    warnings: dict[str, int] = field(default_factory=dict)
    unknown_values: dict[tuple[str, str], int] = field(default_factory=dict)  # (field, value label) -> leads


_LABELLED: Final[dict[str, set[str]]] = {}


def value_label(field_name: str, value: str) -> str:
    """The `value` label of an unknown value: its picklist key, or OTHER_VALUE once the field has its share."""
    key = picklist_key(value)[:MAX_VALUE_LABEL_LENGTH]
    labelled = _LABELLED.setdefault(field_name, set())
    if key in labelled:
        return key
    if len(labelled) < MAX_VALUE_LABELS:
        labelled.add(key)
        return key
    return OTHER_VALUE


def summarize(batch: Scored) -> BatchSummary:
    """The summary of `batch`."""
    warnings = batch.encoded.warnings
    if batch.size <= _FEW_LEADS:
        score_counts, buckets, total, low, high = _figures_of_few(batch)
    else:
        confidence = batch.confidence
        score_counts = np.bincount(batch.scores, minlength=SCORES[-1] + 1)[SCORES[0] :].tolist()
        buckets = bucket_counts(_CONFIDENCE_BOUNDS, confidence)
        total, low, high = float(confidence.sum()), float(confidence.min()), float(confidence.max())
    return BatchSummary(
        leads=batch.size,
        score_counts=score_counts,
        confidence_buckets=buckets,
        confidence_sum=total,
        confidence_min=low,
        confidence_max=high,
        prediction_seconds=batch.prediction_ms / 1000.0,
        # Warnings are one per bad input: counted one by one, which costs nothing on clean traffic.
        warnings=dict(Tally(w.field for w in warnings)) if warnings else {},
        unknown_values=_unknown_values(warnings) if warnings else {},
    )


# Up to this many leads, a batch's figures are summed in Python: five array calls on one lead cost 7 us, more
# than the rest of its metrics (a 1-lead request's summary: 8.7 -> 4.2 us).
_FEW_LEADS: Final = 8
_CONFIDENCE_BOUND_LIST: Final = [float(b) for b in CONFIDENCE_BUCKETS]


def _figures_of_few(batch: Scored) -> tuple[list[int], list[int], float, float, float]:
    """Per-score counts, confidence bucket counts, sum, min and max, as the array path computes them."""
    score_counts = [0] * len(SCORES)
    for score in batch.scores.tolist():
        score_counts[score - SCORES[0]] += 1
    buckets = [0] * (len(_CONFIDENCE_BOUND_LIST) + 1)
    confidence: list[float] = batch.confidence.tolist()
    for value in confidence:
        buckets[bisect_left(_CONFIDENCE_BOUND_LIST, value)] += 1  # np.searchsorted's side="left": Prometheus's le
    return score_counts, buckets, math.fsum(confidence), min(confidence), max(confidence)


def _unknown_values(warnings: Iterable[Any]) -> dict[tuple[str, str], int]:
    """Leads per (field, value label) of the unknown categorical values among `warnings`.

    Counted per distinct value first: a 500-lead request from a CRM whose picklist the map does not know has one
    warning per lead but a handful of distinct values, and each label costs a `picklist_key`.
    """
    per_value = Tally((w.field, w.value) for w in warnings if w.field in _CATEGORY_FIELDS)
    labelled: Tally[tuple[str, str]] = Tally()
    for (name, value), count in per_value.items():  # first seen first, so the label cap keeps the same labels
        labelled[name, value_label(name, value)] += count
    return dict(labelled)


_HTTP_CHILDREN: dict[tuple[str, str, int], Any] = {}


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Record one finished request; `route` is the matched route template (None when nothing matched)."""
    _http_child(_request_key(method, route, status)).observe(seconds)


def _http_child(key: tuple[str, str, int]) -> Any:  # noqa: ANN401 - prometheus_client's labelled child
    child = _HTTP_CHILDREN.get(key)
    if child is None:
        child = _HTTP_CHILDREN.setdefault(key, HTTP_DURATION.labels(key[0], key[1], str(key[2])))
    return child


def observe_batch(summary: BatchSummary) -> None:
    """Record one scored batch."""
    _count_leads(summary)
    MODEL_SECONDS.observe(summary.prediction_seconds)


def _count_leads(summary: BatchSummary) -> None:
    """Everything `observe_batch` records but the model time."""
    LEADS.inc(summary.leads)
    for child, count in zip(_SCORE_CHILDREN, summary.score_counts, strict=True):
        if count:
            child.inc(count)
    add_bucket_counts(CONFIDENCE, summary.confidence_buckets, summary.confidence_sum)
    for name, count in summary.warnings.items():
        WARNINGS.labels(field=name).inc(count)
    for (name, label), count in summary.unknown_values.items():
        UNKNOWN_VALUES.labels(field=name, value=label).inc(count)


@dataclass(frozen=True, slots=True)
class _Joined:
    """The leads of several scored batches as one (a `Scored`, its own `encoded`), for one summary of them all."""

    size: int
    scores: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]
    prediction_ms: float
    warnings: tuple[InputWarning, ...]

    @property
    def encoded(self) -> _Joined:
        return self

    @classmethod
    def of(cls, batches: Sequence[Scored]) -> _Joined:
        return cls(
            size=sum(b.size for b in batches),
            scores=np.concatenate([b.scores for b in batches]),
            confidence=np.concatenate([b.confidence for b in batches]),
            prediction_ms=0.0,  # each batch's own time is observed, not a sum
            warnings=tuple(w for b in batches for w in b.encoded.warnings),
        )


def observe_batches(batches: Sequence[Scored]) -> None:
    """Record several scored batches, as `observe_batch` of each would (one model time per batch), in a few calls."""
    if not batches:
        return
    _count_leads(summarize(batches[0] if len(batches) == 1 else _Joined.of(batches)))
    observe_many(MODEL_SECONDS, np.array([b.prediction_ms for b in batches], dtype=np.float64) / 1000.0)


# How long a finished request's figures may wait in this process before they are written to Prometheus.
# prometheus_client writes every increment to its file under a lock (about 0.7 us each, nine or so per scored
# request: 15 us of a 1-lead request's ~330 us of CPU, `bench/README.md`); gathered, a second of requests is
# written in a few calls per series. A scrape (every 15 s or more) may miss the last second of another worker;
# one of this process first writes what it holds (`render`), as does shutdown.
FLUSH_SECONDS: Final = 1.0


class _Pending:
    """Requests finished since the last flush: durations by (method, route, status), scored batches in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # requests end on the event loop; a scrape renders in a worker thread
        self.durations: dict[tuple[str, str, int], list[float]] = {}
        self.batches: list[Scored] = []
        self.since = time.monotonic()


_PENDING: Final = _Pending()


def _request_key(method: str, route: str | None, status: int) -> tuple[str, str, int]:
    # Bounded keys: methods folded to a fixed set, routes are templates, statuses are the server's own.
    return (method if method in _METHODS else "OTHER", route or UNMATCHED_ROUTE, status)


def defer_request(method: str, route: str | None, status: int, seconds: float, batch: Scored | None) -> None:
    """Count one finished request and its scored batch (if any): written at the next flush, within FLUSH_SECONDS."""
    key = _request_key(method, route, status)
    now = time.monotonic()
    with _PENDING.lock:
        durations = _PENDING.durations.get(key)
        if durations is None:
            _PENDING.durations[key] = [seconds]
        else:
            durations.append(seconds)
        if batch is not None:
            _PENDING.batches.append(batch)
        due = now - _PENDING.since >= FLUSH_SECONDS
    if due:
        flush_pending()


def flush_pending() -> None:
    """Write the figures of the requests finished since the last flush to Prometheus now."""
    with _PENDING.lock:
        durations, batches = _PENDING.durations, _PENDING.batches
        _PENDING.durations, _PENDING.batches, _PENDING.since = {}, [], time.monotonic()
    for key, seconds in durations.items():
        if len(seconds) == 1:
            _http_child(key).observe(seconds[0])
        else:
            observe_many(_http_child(key), np.array(seconds, dtype=np.float64))
    observe_batches(batches)


async def flush_periodically(interval: float = FLUSH_SECONDS) -> None:
    """`flush_pending` every `interval` seconds until cancelled: a worker gone idle still writes its last requests."""
    while True:
        await asyncio.sleep(interval)
        flush_pending()


class Recorder:
    """Called once per finished request (by the request middleware): feeds Prometheus and EMF, each when on.

    Prometheus receives the request through `defer_request` (written within FLUSH_SECONDS, see there).
    """

    def __init__(self, prometheus: bool = True, emf: EmfAggregator | None = None) -> None:
        self.prometheus = prometheus
        self.emf = emf

    def __call__(self, method: str, route: str | None, status: int, seconds: float, batch: Scored | None) -> None:
        """Record the request, and its scored batch when it scored one."""
        scored = batch if batch is not None and batch.size else None
        if self.prometheus:
            defer_request(method, route, status, seconds, scored)
        if self.emf is not None:
            self.emf.add_request(status, seconds)
            if scored is not None:
                summary = summarize(scored)
                self.emf.add_batch(
                    summary.score_counts, summary.confidence_sum, summary.confidence_min, summary.confidence_max
                )


# --- the lake's figures --------------------------------------------------------------------------------


class _LakeFigures:
    """This process's lake figures, for EMF (Prometheus keeps its own); the lake reports from its own thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows = 0
        self.bytes = 0
        self.oldest_age_seconds = 0.0
        self.flushes = 0
        self.upload_failures = 0
        self.quarantined = 0

    def snapshot(self) -> LakeSnapshot:
        with self.lock:
            return LakeSnapshot(
                self.rows, self.bytes, self.oldest_age_seconds, self.flushes, self.upload_failures, self.quarantined
            )


_LAKE: Final = _LakeFigures()


def set_lake_backlog(rows: int, bytes_: int, oldest_age_seconds: float) -> None:
    """Report this process's lake backlog: rows and bytes not yet in the lake, age of the oldest such row."""
    LAKE_BACKLOG_ROWS.set(rows)
    LAKE_BACKLOG_BYTES.set(bytes_)
    LAKE_OLDEST_AGE.set(oldest_age_seconds)
    with _LAKE.lock:
        _LAKE.rows, _LAKE.bytes, _LAKE.oldest_age_seconds = rows, bytes_, oldest_age_seconds


def observe_lake_flush(rows: int, files: int, seconds: float) -> None:
    """Report one flush: `rows` written as `files` Parquet files in `seconds`."""
    LAKE_FLUSHES.inc()
    LAKE_FLUSHED_ROWS.inc(rows)
    LAKE_FILES.inc(files)
    LAKE_FLUSH_SECONDS.observe(seconds)
    with _LAKE.lock:
        _LAKE.flushes += 1


def set_lake_quarantined(segments: int) -> None:
    """Report how many segments the spool root keeps in quarantine."""
    LAKE_QUARANTINED.set(segments)
    with _LAKE.lock:
        _LAKE.quarantined = segments


def observe_lake_upload_failure() -> None:
    """Report one failed upload to the lake's store."""
    LAKE_UPLOAD_FAILURES.inc()
    with _LAKE.lock:
        _LAKE.upload_failures += 1


async def poll_lake_backlog(totals: Callable[[], tuple[int, int, float]], interval: float = 5.0) -> None:
    """Report `totals()` (rows, bytes, oldest age) every `interval` seconds until cancelled.

    Polled rather than reported per event: the age of the oldest unflushed row grows while nothing happens.
    """
    while True:
        set_lake_backlog(*totals())
        await asyncio.sleep(interval)


def lake_snapshot() -> LakeSnapshot:
    """This process's lake figures (backlog now, flushes and failures so far)."""
    return _LAKE.snapshot()


# --- process lifetime ----------------------------------------------------------------------------------


def set_drift(psi: Mapping[str, float], unknown_share: Mapping[str, float], low_confidence_share: float) -> None:
    """Set the drift gauges from one drift measurement (PSI and unknown share per input)."""
    for name, value in psi.items():
        DRIFT_PSI.labels(field=name).set(value)
    DRIFT_MAX_PSI.set(max(psi.values(), default=0.0))
    for name, value in unknown_share.items():
        DRIFT_UNKNOWN_SHARE.labels(field=name).set(value)
    DRIFT_LOW_CONFIDENCE_SHARE.set(low_confidence_share)


def write_drift_textfile(path: Path) -> None:
    """Write the drift gauges alone in Prometheus text format (for node exporter's textfile collector)."""
    registry = CollectorRegistry(auto_describe=True)
    for gauge in _DRIFT_GAUGES:
        registry.register(gauge)
    write_to_textfile(str(path), registry)


def set_model_info(model_version: str) -> None:
    """Mark the model version this process serves."""
    MODEL_INFO.labels(model_version=model_version).set(1)


def process_exit() -> None:
    """Write the last figures, then drop the live gauges (backlog, model info): a scrape stops counting this process."""
    flush_pending()
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


# --- exposition ----------------------------------------------------------------------------------------


class WorkerProcesses(Collector):
    """Standard `process_*` metrics of every process that writes metrics here, labelled by pid.

    prometheus_client's ProcessCollector reports only the process that serves the scrape; in multiprocess mode
    each worker's figures are read from /proc by pid instead.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self._pids = sorted(set(pids))
        self._current = 0
        self._collector = ProcessCollector(pid=lambda: self._current, registry=None)

    def collect(self) -> Iterable[Metric]:
        """One family per process metric, one sample per pid."""
        families: dict[str, Metric] = {}
        for pid in self._pids:
            self._current = pid
            for family in self._collector.collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(families.values())


def _multiprocess_registry(directory: Path) -> CollectorRegistry:
    pids = {pid for path in directory.glob("*.db") if (pid := file_pid(path)) is not None}
    for pid in pids - {os.getpid()}:
        if not alive(pid):
            # A worker that crashed never ran its own clean-up; its live gauges must not count any more.
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(WorkerProcesses(p for p in pids | {os.getpid()} if alive(p)))
    return registry


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of every worker (body, content type), this process's pending figures written."""
    flush_pending()
    directory = os.environ.get(MULTIPROC_ENV)
    if multiprocess_mode() and directory:
        return generate_latest(_multiprocess_registry(Path(directory))), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
