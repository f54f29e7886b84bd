"""Serving with several workers: one SO_REUSEPORT socket each, uvicorn's supervision, clean SIGTERM."""

from __future__ import annotations

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
