"""What a real `leadscore serve` does at its edges: header caps, slow clients, large bodies, a busy port."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.server import ServerProcess, free_port, start_server

LIVE = "/api/v1/health/live"
SCORE = "/api/v1/scoring/score"
HEADER_TIMEOUT_SECONDS = 2.0
DEADLINE_SECONDS = 30.0


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[ServerProcess]:
    """The real server (one worker) with a short header deadline."""
    tmp = tmp_path_factory.mktemp("server-edges")
    env = {"LEADSCORE_MODEL_DIR": str(tiny_bundle), "LEADSCORE_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_SECONDS)}
    process = start_server(tmp, env=env)
    yield process
    process.stop()


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes or a whole response with its Content-Length has arrived."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            lengths = [
                line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
            ]
            if lengths and len(body) >= int(lengths[0]):
                return data


def _open_after(socks: list[socket.socket], deadline: float) -> int:
    """How many of `socks` the server has not closed by `deadline` (waits no longer than needed)."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    open_count = len(socks)
    while open_count and (remaining := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(timeout=remaining):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                closed = not sock.recv(65536) or False
            except ConnectionResetError:
                closed = True
            if closed:
                selector.unregister(sock)
                open_count -= 1
    selector.close()
    return open_count


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send `data`, stopping quietly where the server stops reading and closes."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


@pytest.mark.e2e
def test_an_8_mib_header_is_refused(edge_server: ServerProcess) -> None:
    """A request whose headers are 8 MiB is answered 431 and closed, not read into memory and served."""
    with _connect(edge_server) as sock:
        request = f"GET {LIVE} HTTP/1.1\r\nHost: t\r\nX-Big: ".encode() + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n"
        sender = threading.Thread(target=_send_all, args=(sock, request), daemon=True)
        sender.start()
        response = _read_response(sock)
        sender.join(DEADLINE_SECONDS)
    assert response.startswith(b"HTTP/1.1 431 ")


@pytest.mark.e2e
def test_slowloris_connections_do_not_starve_live_and_are_cut_off(edge_server: ServerProcess) -> None:
    """40 clients trickling their headers neither stop /health/live answering nor keep their connections."""
    slow = [_connect(edge_server) for _ in range(40)]
    stop = threading.Event()

    def trickle() -> None:
        for sock in slow:
            _send_all(sock, f"GET {LIVE} HTTP/1.1\r\nHost: t\r\n".encode())
        while not stop.wait(0.2):
            for sock in slow:
                _send_all(sock, b"X-a: b\r\n")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        with httpx.Client(timeout=5.0) as client:
            for _ in range(5):
                assert client.get(edge_server.url + LIVE).status_code == 200
        still_open = _open_after(slow, deadline=time.monotonic() + HEADER_TIMEOUT_SECONDS + 10.0)
    finally:
        stop.set()
        trickler.join(DEADLINE_SECONDS)
        for sock in slow:
            sock.close()
    assert still_open == 0


@pytest.mark.e2e
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_3_mb_body_gets_the_413_envelope_never_a_reset(edge_server: ServerProcess, framing: str) -> None:
    """A client sending a 3 MB body (and asking to close after) sends it all and reads the 413: no reset mid-send."""
    body = b" " * (3 * 1000 * 1000)
    pieces = [body[start : start + 65536] for start in range(0, len(body), 65536)]
    if framing == "chunked":
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
        framing_header = "Transfer-Encoding: chunked"
    else:
        framing_header = f"Content-Length: {len(body)}"
    headers = ("Host: t", "Connection: close", "Content-Type: application/json", framing_header)
    head = f"POST {SCORE} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    for _ in range(5):
        with _connect(edge_server) as sock:
            sock.sendall(head.encode())
            for piece in pieces:
                sock.sendall(piece)  # a reset here is what the client of the old server saw
            response = _read_response(sock)
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 413 ")
        assert orjson.loads(rest.partition(b"\r\n\r\n")[2])["code"] == "payload_too_large"


def test_one_worker_server_on_a_busy_port_fails_at_once(tmp_path: Path, tiny_bundle: Path) -> None:
    """`serve` with one worker on a port in use exits 2 with a message, before it loads or says it started."""
    port = free_port()
    env = {**os.environ, "LEADSCORE_MODEL_DIR": str(tiny_bundle),
           "LEADSCORE_SPOOL_DIR": str(tmp_path / "spool"), "LEADSCORE_LAKE_URI": str(tmp_path / "lake")}  # fmt: skip
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "leadscore", "serve", "--port", str(port)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "startup complete" not in result.stdout + result.stderr
