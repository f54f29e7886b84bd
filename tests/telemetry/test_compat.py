"""The patch of prometheus_client's histogram internals: pinned to the version it was checked against."""

from __future__ import annotations

from importlib import metadata

from prometheus_client import CollectorRegistry, Histogram

from leadscore.telemetry import _compat


def test_patch_is_pinned_to_the_installed_prometheus_client():
    """A new prometheus-client fails here until _compat is checked against it and PATCHED_VERSION moved."""
    assert metadata.version("prometheus-client") == _compat.PATCHED_VERSION


def test_added_counts_expose_as_observations_do():
    """Counts added through the patch give the exposition that the same observe calls give."""
    bulk = Histogram("c", "c", buckets=(1.0, 2.0), registry=(bulk_registry := CollectorRegistry()))
    single = Histogram("c", "c", buckets=(1.0, 2.0), registry=(single_registry := CollectorRegistry()))
    _compat.add_bucket_counts(bulk, [2, 0, 1], total=0.5 + 0.75 + 7.0)
    for v in (0.5, 0.75, 7.0):
        single.observe(v)

    def exposed(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert exposed(bulk_registry) == exposed(single_registry)
    assert _compat.upper_bounds(bulk) == [1.0, 2.0]
