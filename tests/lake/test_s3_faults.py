"""The durability contract against a real S3 server (Ceph RGW) with the API as a real process.

Each test prints its figures (requests acknowledged, rows found, lost, duplicated): run with `-s` to see them.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.lake.conftest import lake_rows, row_counts, s3_store
from tests.support.rgw import RgwServer
from tests.support.server import ServerProcess, start_server
from tests.support.traffic import Traffic

from leadscore.lake.sink import LakeConfig, LakeSink

pytestmark = pytest.mark.e2e

# Small segments and short retries so tests see uploads and recoveries within seconds.
FAST_LAKE = {
    "LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS": "0.5",
    "LEADSCORE_LAKE_RETRY_INITIAL_SECONDS": "0.2",
    "LEADSCORE_LAKE_RETRY_MAX_SECONDS": "2",
}


def _start(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str], **extra: str) -> ServerProcess:
    env = {"LEADSCORE_MODEL_DIR": str(tiny_bundle), **s3_env, **FAST_LAKE, **extra}
    return start_server(tmp_path, env=env)


def _wait_flushed(server: ServerProcess, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    lake: dict[str, Any] = {}
    while time.monotonic() < deadline:
        lake = httpx.get(f"{server.url}/api/v1/health", timeout=5).json()["lake"]
        if lake["backlog_rows"] == 0:
            return lake
        time.sleep(0.2)
    raise AssertionError(f"lake backlog not flushed in {timeout} s: {lake}")


def _audit(name: str, traffic: Traffic, env: dict[str, str]) -> dict[str, int]:
    """Compare acknowledged requests with the rows in S3; print and return the figures."""
    counts = row_counts(lake_rows(s3_store(env)))
    found = lost = 0
    for request_id, leads in traffic.acknowledged.items():
        for i in range(leads):
            if counts.get((request_id, f"lead-{i}"), 0) >= 1:
                found += 1
            else:
                lost += 1
    figures = {
        "requests_acknowledged": len(traffic.acknowledged),
        "leads_acknowledged": traffic.acknowledged_leads,
        "rows_found": found,
        "rows_lost": lost,
        "rows_duplicated": sum(c - 1 for c in counts.values() if c > 1),
        "rows_in_lake": sum(counts.values()),
    }
    print(f"\n[{name}] {json.dumps(figures)} statuses={dict(traffic.statuses)}")  # the test's report
    return figures


def test_every_scored_lead_is_one_row_in_s3(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """N leads scored over HTTP become exactly N rows, each (request_id, lead_id) once."""
    server = _start(tmp_path, tiny_bundle, s3_env)
    try:
        traffic = Traffic(server.url, max_requests=60, concurrency=4).start()
        traffic.finish()
        _wait_flushed(server)
    finally:
        assert server.stop() == 0
    figures = _audit("exact", traffic, s3_env)
    assert figures["requests_acknowledged"] == 60
    assert figures["rows_found"] == figures["leads_acknowledged"] == figures["rows_in_lake"] == 180
    assert figures["rows_lost"] == figures["rows_duplicated"] == 0


def test_s3_outage_loses_nothing(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str], rgw: RgwServer) -> None:
    """S3 down for 30 s under load, then back: 0 rows lost, 0 duplicated, answers only 2xx or 503."""
    server = _start(tmp_path, tiny_bundle, s3_env)
    try:
        traffic = Traffic(server.url, concurrency=2, max_requests=5000, max_seconds=90, pause=0.03).start()
        traffic.wait_for(20)
        rgw.stop_gateway()
        try:
            time.sleep(15)
            during = httpx.get(f"{server.url}/api/v1/health", timeout=5).json()["lake"]
            time.sleep(15)
        finally:
            rgw.start_gateway()
        traffic.stop()
        after = _wait_flushed(server, timeout=90)
    finally:
        assert server.stop() == 0
    figures = _audit("outage", traffic, s3_env)
    assert during["backlog_rows"] > 0
    assert during["upload_failures"] > 0
    assert after["backlog_rows"] == 0
    assert set(traffic.statuses) <= {"200", "503"}
    assert figures["rows_lost"] == 0
    assert figures["rows_duplicated"] == 0


def test_sigterm_under_load_flushes_everything(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """SIGTERM during load: exit code 0, and every 2xx's rows are in S3 afterwards."""
    server = _start(tmp_path, tiny_bundle, s3_env, LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS="60")
    traffic = Traffic(server.url, concurrency=4, max_requests=4000, max_seconds=60).start()
    traffic.wait_for(50)
    server.signal(signal.SIGTERM)
    code = server.wait(timeout=40)
    traffic.stop()
    figures = _audit("sigterm", traffic, s3_env)
    assert code == 0, server.log()[-3000:]
    assert figures["rows_lost"] == 0
    assert figures["rows_duplicated"] == 0
    assert not any((tmp_path / "spool").glob("*/*.seg"))


def test_kill_9_then_restart_recovers_everything(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """Kill -9 during load, restart on the same spool: every 2xx's rows reach S3 after recovery."""
    server = _start(tmp_path, tiny_bundle, s3_env, LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS="60")
    traffic = Traffic(server.url, concurrency=4, max_requests=4000, max_seconds=60).start()
    traffic.wait_for(50)
    server.signal(signal.SIGKILL)
    server.wait(timeout=10)
    traffic.stop()
    assert any((tmp_path / "spool").glob("w-*/*.open"))
    restarted = _start(tmp_path, tiny_bundle, s3_env)
    try:
        _wait_flushed(restarted)
    finally:
        assert restarted.stop() == 0
    figures = _audit("kill-9", traffic, s3_env)
    assert "spool_segment_recovered" in restarted.log()
    assert figures["rows_lost"] == 0
    assert figures["rows_duplicated"] == 0


def test_uploading_a_segment_again_adds_no_object(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """Re-running the upload of the same segment overwrites its object: no new object, no new rows."""
    server = _start(tmp_path, tiny_bundle, s3_env, LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS="60")
    traffic = Traffic(server.url, max_requests=20, concurrency=2).start()
    traffic.finish()
    server.signal(signal.SIGKILL)
    server.wait(timeout=10)
    # Keep a copy of the crashed worker's spool, then let a restart upload it.
    spool = tmp_path / "spool"
    saved = tmp_path / "saved-spool"
    shutil.copytree(spool, saved)
    restarted = _start(tmp_path, tiny_bundle, s3_env)
    try:
        _wait_flushed(restarted)
    finally:
        restarted.stop()
    store = s3_store(s3_env)
    before = store.list()
    rows_before = lake_rows(store).num_rows

    sink = LakeSink(LakeConfig(spool_dir=saved), store)
    sink.start()
    assert sink.wait_idle(30)
    sink.close(10)
    assert store.list() == before
    assert lake_rows(store).num_rows == rows_before == 60
