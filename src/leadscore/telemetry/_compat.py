"""The one patch of prometheus_client's internals: adding many observations to a histogram in a few calls.

prometheus_client has no bulk observe, and one `observe` per lead costs a measurable share of a 500-lead
request (more in multiprocess mode; `bench/README.md`). So precomputed bucket counts are added to the
histogram's own bucket values, the same ones `observe` increments. These are private attributes:
`PATCHED_VERSION` is the prometheus-client version this was checked against, and a test pinned to it
(tests/telemetry/test_compat.py) fails on any other version until the patch is checked again.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import Histogram

PATCHED_VERSION: Final = "0.26.0"


def upper_bounds(histogram: Histogram) -> list[float]:
    """The histogram's finite bucket bounds (`le` values, +Inf left out)."""
    bounds: list[float] = histogram._upper_bounds[:-1]
    return bounds


def add_bucket_counts(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add precomputed bucket counts (one per bound, then +Inf) and their sum, as as many `observe` calls would."""
    buckets: list[Any] = histogram._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    histogram._sum.inc(total)
