"""Serving with several workers: one SO_REUSEPORT socket each, uvicorn's supervision, clean SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from leadscore.serving import reuse_port_socket
from tests.support.server import free_port, start_server
from tests.support.waiting import wait_until


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, as /proc lists them now."""
    pids = [pid]
    for parent in pids:  # grows as children are found
        for task in Path(f"/proc/{parent}/task").iterdir():
            pids.extend(int(child) for child in (task / "children").read_text().split())
    return pids


def maps_pandas(pid: int) -> bool:
    """Whether process `pid` has any file of the pandas package mapped (its extension modules, once imported)."""
    return f"{os.sep}pandas{os.sep}" in Path(f"/proc/{pid}/maps").read_text()


def test_reuse_port_sockets_share_one_port() -> None:
    """Several listening sockets can bind the same address: one per worker."""
    port = free_port()
    sockets = [reuse_port_socket("127.0.0.1", port) for _ in range(3)]
    try:
        for sock in sockets:
            sock.listen()
        assert {s.getsockname()[1] for s in sockets} == {port}
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.e2e
def test_two_workers_serve_and_stop_cleanly_on_sigterm(tmp_path: Path, tiny_bundle: Path) -> None:
    """A 2-worker server scores on its port and, on SIGTERM, both workers shut down and it exits 0."""
    server = start_server(tmp_path, env={"LEADSCORE_MODEL_DIR": str(tiny_bundle)}, args=("--workers", "2"))
    try:
        # Readiness answers once one worker is up: the other may still be starting (on a busy machine, for
        # seconds), and a worker stopped while it starts logs no shutdown.
        server.wait_for_log("Application startup complete", count=2)
        statuses = []
        for _ in range(20):
            with httpx.Client(timeout=5) as client:  # a new connection each time: spread over the workers
                statuses.append(client.post(f"{server.url}/api/v1/scoring/score", json={"leads": [{}]}).status_code)
    finally:
        server.signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    assert statuses == [200] * 20
    assert code == 0
    assert server.log().count("Application shutdown complete") == 2


def test_multi_worker_server_refuses_a_port_in_use(tmp_path: Path, tiny_bundle: Path) -> None:
    """A second server on a busy port exits non-zero with a message instead of sharing the port."""
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "leadscore", "serve", "--port", str(port), "--workers", "2"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "LEADSCORE_MODEL_DIR": str(tiny_bundle),
                 "LEADSCORE_SPOOL_DIR": str(tmp_path / "spool"), "LEADSCORE_LAKE_URI": str(tmp_path / "lake")},
        )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.e2e
def test_no_process_of_the_service_loads_pandas(tmp_path: Path, tiny_bundle: Path) -> None:
    """The supervisor, both workers and their lake committers score and commit without pandas, installed here."""
    assert importlib.util.find_spec("pandas") is not None
    env = {"LEADSCORE_MODEL_DIR": str(tiny_bundle), "LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS": "0.2"}
    server = start_server(tmp_path, env=env, args=("--workers", "2"))
    try:
        server.wait_for_log("Application startup complete", count=2)
        for _ in range(8):
            with httpx.Client(timeout=10) as client:  # a new connection each time: spread over the workers
                assert client.post(f"{server.url}/api/v1/scoring/score", json={"leads": [{}] * 50}).status_code == 200
        server.wait_for_log('"lake_committed"')

        # The supervisor, two workers, a committer each (started with its worker), multiprocessing's tracker.
        def all_started() -> list[int] | None:
            pids = process_tree(server.process.pid)
            return pids if len(pids) >= 5 else None

        pids = wait_until(all_started, timeout=60, what="the service's five processes")
        mapping = {pid: maps_pandas(pid) for pid in pids}
    finally:
        server.stop()
    assert mapping == dict.fromkeys(pids, False)
