"""The durability contract against a real S3 server (Ceph RGW) with the API as a real process.

Each test prints its figures (requests acknowledged, rows in the table, lost, duplicated): run with `-s` to see
them. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.lake import duplicated, live_file_rows, row_counts, table_rows
from tests.support.restricted import restricted_lake
from tests.support.rgw import RgwServer
from tests.support.server import ServerProcess, start_server
from tests.support.traffic import Traffic
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

# Small segments, quick commits and retries so tests see commits and recoveries within seconds.
FAST_LAKE = {
    "LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS": "0.5",
    "LEADSCORE_LAKE_COMMIT_INTERVAL_SECONDS": "1",
    "LEADSCORE_LAKE_RETRY_INITIAL_SECONDS": "0.2",
    "LEADSCORE_LAKE_RETRY_MAX_SECONDS": "2",
    "LEADSCORE_LAKE_REQUEST_TIMEOUT_SECONDS": "10",
}


def _start(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str], **extra: str) -> ServerProcess:
    env = {"LEADSCORE_MODEL_DIR": str(tiny_bundle), **s3_env, **FAST_LAKE, **extra}
    return start_server(tmp_path, env=env)


def lake_status(server: ServerProcess) -> dict[str, Any]:
    """The lake part of the server's health."""
    lake: dict[str, Any] = httpx.get(f"{server.url}/api/v1/health", timeout=5).json()["lake"]
    return lake


def wait_committed(server: ServerProcess, timeout: float = 90.0) -> dict[str, Any]:
    """Wait until the server's lake backlog is empty; returns the lake status then."""
    return wait_until(
        lambda: (lake := lake_status(server))["backlog_rows"] == 0 and lake, timeout, 0.2, "lake backlog committed"
    )


def restart_and_commit(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """Start a server on the same spool root, wait until it adopted and committed what was left, stop it cleanly."""
    restarted = _start(tmp_path, tiny_bundle, s3_env)
    try:
        wait_committed(restarted)
    finally:
        assert restarted.stop() == 0
    assert "spool_segment_adopted" in restarted.log()


def audit(name: str, traffic: Traffic | list[Traffic], env: dict[str, str]) -> dict[str, int]:
    """Compare acknowledged requests with the rows in the table (and in its live files); print the figures."""
    senders = traffic if isinstance(traffic, list) else [traffic]
    acknowledged = {rid: n for t in senders for rid, n in t.acknowledged.items()}
    unanswered = {rid for t in senders for rid in t.unanswered}
    counts = row_counts(table_rows(env))
    files = row_counts(live_file_rows(env))
    found = lost = 0
    for request_id, leads in acknowledged.items():
        for i in range(leads):
            if counts.get((request_id, f"lead-{i}"), 0) >= 1:
                found += 1
            else:
                lost += 1
    figures = {
        "requests_acknowledged": len(acknowledged),
        "leads_acknowledged": sum(acknowledged.values()),
        "rows_in_table": sum(counts.values()),
        # Rows of requests the server died while answering: kept or not, the client could not know.
        "rows_of_unanswered_requests": sum(c for (rid, _), c in counts.items() if rid in unanswered),
        "rows_of_requests_never_sent": sum(
            c for (rid, _), c in counts.items() if rid not in unanswered and rid not in acknowledged
        ),
        "rows_found": found,
        "rows_lost": lost,
        "rows_duplicated": duplicated(counts),
        "rows_duplicated_in_live_files": duplicated(files),
    }
    statuses = {k: v for t in senders for k, v in t.statuses.items()}
    print(f"\n[{name}] {json.dumps(figures)} statuses={statuses}")  # the test's report
    return figures


def assert_exactly_once(figures: dict[str, int]) -> None:
    """Every acknowledged lead is in the table once; any other row is of a request that got no answer."""
    assert figures["rows_lost"] == 0
    assert figures["rows_duplicated"] == figures["rows_duplicated_in_live_files"] == 0
    assert figures["rows_found"] == figures["leads_acknowledged"]
    assert figures["rows_of_requests_never_sent"] == 0
    assert figures["rows_in_table"] == figures["rows_found"] + figures["rows_of_unanswered_requests"]


def test_every_scored_lead_is_one_row_in_the_table(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """N leads scored over HTTP become exactly N rows of the Iceberg table on S3, each (request, lead) once."""
    server = _start(tmp_path, tiny_bundle, s3_env)
    try:
        traffic = Traffic(server.url, max_requests=60, concurrency=4).start()
        traffic.finish()
        wait_committed(server)
    finally:
        assert server.stop() == 0
    figures = audit("exact", traffic, s3_env)
    assert figures["requests_acknowledged"] == 60
    assert_exactly_once(figures)


def test_s3_outage_loses_nothing(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str], rgw: RgwServer) -> None:
    """S3 down under load, then back: 0 rows lost, 0 duplicated, answers only 2xx or 503."""
    server = _start(tmp_path, tiny_bundle, s3_env)
    try:
        traffic = Traffic(server.url, concurrency=2, max_requests=5000, max_seconds=120, pause=0.03).start()
        traffic.wait_for(20)
        rgw.stop_gateway()
        try:
            during = wait_until(
                lambda: (lake := lake_status(server))["commit_failures"] >= 3 and lake["backlog_rows"] > 0 and lake,
                timeout=90,
                interval=0.2,
                what="commits failing while S3 is down, rows waiting on the spool",
            )
        finally:
            rgw.start_gateway()
        traffic.stop()
        after = wait_committed(server, timeout=120)
    finally:
        assert server.stop() == 0
    figures = audit("outage", traffic, s3_env)
    assert during["backlog_rows"] > 0
    assert after["backlog_rows"] == 0
    assert set(traffic.statuses) <= {"200", "503"}
    assert_exactly_once(figures)


def test_sigterm_under_load_commits_everything(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """SIGTERM during load: exit code 0, and every 2xx's rows are in the table afterwards, the spool empty."""
    server = _start(tmp_path, tiny_bundle, s3_env, LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS="60")
    traffic = Traffic(server.url, concurrency=4, max_requests=4000, max_seconds=60).start()
    traffic.wait_for(50)
    server.signal(signal.SIGTERM)
    code = server.wait(timeout=60)
    traffic.stop()
    figures = audit("sigterm", traffic, s3_env)
    assert code == 0, server.log()[-3000:]
    assert_exactly_once(figures)
    assert not any((tmp_path / "spool").glob("*/*.seg"))


def test_sigterm_while_s3_hangs_exits_in_grace_non_zero_and_the_next_server_adopts(
    tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str], rgw: RgwServer
) -> None:
    """S3 hung (gateway stopped mid-flight): SIGTERM exits within grace + 5 s, non-zero; rows wait; a restart commits.

    The gateway process is paused (SIGSTOP): connections open but no answer comes, as with a hung S3.
    """
    grace = 5.0
    server = _start(tmp_path, tiny_bundle, s3_env, LEADSCORE_SHUTDOWN_GRACE_SECONDS=str(grace))
    traffic = Traffic(server.url, concurrency=2, max_requests=200, max_seconds=60).start()
    traffic.wait_for(20)
    gateway = rgw.pids["rgw"]
    os.kill(gateway, signal.SIGSTOP)
    try:
        wait_until(lambda: lake_status(server)["backlog_rows"] > 0, 30, 0.1, "rows waiting on the hung store")
        traffic.stop()
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=grace + 30)
        took = time.monotonic() - started
        left = list((tmp_path / "spool").glob("w-*/*.seg"))
    finally:
        os.kill(gateway, signal.SIGCONT)
    assert code != 0, server.log()[-3000:]
    assert took <= grace + 5.0, f"exit took {took:.1f} s"
    assert left
    assert "exit_with_lake_backlog" in server.log()
    restart_and_commit(tmp_path, tiny_bundle, s3_env)
    assert_exactly_once(audit("sigterm-hung-s3", traffic, s3_env))


def test_kill_9_then_restart_recovers_everything(tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]) -> None:
    """Kill -9 during load, restart on the same spool: every 2xx's rows reach the table once after recovery."""
    server = _start(tmp_path, tiny_bundle, s3_env, LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS="60")
    traffic = Traffic(server.url, concurrency=4, max_requests=4000, max_seconds=60).start()
    traffic.wait_for(50)
    server.signal(signal.SIGKILL)
    server.wait(timeout=10)
    traffic.stop()
    assert any((tmp_path / "spool").glob("w-*/*.open"))
    restart_and_commit(tmp_path, tiny_bundle, s3_env)
    assert_exactly_once(audit("kill-9", traffic, s3_env))


def test_kill_9_of_one_of_two_servers_on_one_spool_root_the_other_adopts(
    tmp_path: Path, tiny_bundle: Path, s3_env: dict[str, str]
) -> None:
    """Two servers share a spool root (EFS on ECS); one is killed: the live one adopts its rows, none lost or double."""
    shared = {"LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS": "60", "LEADSCORE_LAKE_ADOPT_INTERVAL_SECONDS": "1"}
    # Both take tmp_path's spool root (start_server's default), as two tasks mounting one EFS directory.
    first = _start(tmp_path, tiny_bundle, s3_env, **shared)
    second = _start(tmp_path, tiny_bundle, s3_env, **shared)
    try:
        to_first = Traffic(first.url, concurrency=2, max_requests=2000, max_seconds=60).start()
        to_second = Traffic(second.url, concurrency=2, max_requests=100, max_seconds=60).start()
        to_first.wait_for(40)
        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        to_first.stop()
        to_second.finish()
        spool = tmp_path / "spool"
        wait_until(
            # The dead server's directory is committed and removed; only the live one's own (still open) is left.
            lambda: (
                "spool_segment_adopted" in second.log()
                and sum(1 for d in spool.glob("w-*") if any(d.glob("*.seg")) or any(d.glob("*.open"))) <= 1
            ),
            120,
            0.2,
            "the dead server's spool adopted and committed by the live one",
        )
    finally:
        first.stop()
        assert second.stop() == 0
    assert_exactly_once(audit("kill-9-shared-spool", [to_first, to_second], s3_env))


def test_the_server_commits_under_the_deployed_task_roles_permissions(
    tmp_path: Path, tiny_bundle: Path, rgw: RgwServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only the task role's S3 statements (from the synthesized CDK template) every acknowledged row lands once."""
    lake = restricted_lake(rgw, bucket=f"task-{uuid.uuid4().hex[:12]}", prefix="predictions")
    env = {**lake.env, "LEADSCORE_LAKE_CATALOG_URI": f"sqlite:///{tmp_path / 'catalog.db'}"}
    server = _start(tmp_path, tiny_bundle, env)
    try:
        traffic = Traffic(server.url, max_requests=40, concurrency=2).start()
        traffic.finish()
        committed = wait_committed(server)
    finally:
        assert server.stop() == 0, server.log()[-3000:]
    assert committed["commit_failures"] == 0
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, env[key])  # read back as the task would
    assert_exactly_once(audit("restricted-credentials", traffic, env))
