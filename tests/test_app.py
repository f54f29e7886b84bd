"""Application wiring that no route shows: garbage-collector tuning at start-up."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient


def test_startup_freezes_long_lived_objects_and_raises_the_gc_threshold(client: TestClient) -> None:
    """After start-up the model and libraries are frozen out of the collector and young collections are rarer."""
    assert client.get("/api/v1/health/live").status_code == 200
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] >= 50_000
