"""Start `leadscore serve` as a real process on a free loopback port, and stop it by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running `leadscore serve` process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 120.0) -> None:
        """Wait until the log holds `text` `count` times (e.g. every worker's start); AssertionError past `timeout`."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            assert self.process.poll() is None, f"server exited with {self.process.returncode}:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"{count} x {text!r} not logged in {timeout} s:\n{self.log()[-4000:]}"
            time.sleep(0.1)

    def signal(self, sig: int) -> None:
        """Send `sig` to the server process (ours, by PID)."""
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit and return the exit code."""
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start_server(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    wait_ready: bool = True,
    timeout: float = 180.0,
) -> ServerProcess:
    """Start the server with `env` added to ours; wait until readiness answers 200 unless told not to.

    The deadline is generous: a two-worker start took over 60 s on a busy 2-core machine running two test
    workers; a healthy start returns as soon as readiness answers, so only a broken one waits that long.
    """
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "LEADSCORE_SPOOL_DIR": str(tmp_path / "spool"),
                "LEADSCORE_LAKE_URI": str(tmp_path / "lake"), **(env or {})}  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "leadscore", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = ServerProcess(process=process, port=port, log_path=log_path, env=full_env)
    if not wait_ready:
        return server
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/api/v1/health/ready", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not ready within {timeout} s:\n{server.log()[-4000:]}")
