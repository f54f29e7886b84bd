"""The private patches of library internals hold for the library version they were written against."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from leadscore._compat import PATCHED_UVICORN, HeaderLimitedProtocol, HeaderLimits, OneWritePerResponse, ServerConfig
from tests.support.server import free_port
from tests.support.waiting import wait_until


def test_uvicorn_is_the_version_the_patches_were_written_for() -> None:
    """On another uvicorn the header caps and the reuse-port supervisor must be re-checked (then bump the pin)."""
    assert uvicorn.__version__ == PATCHED_UVICORN


def test_the_header_caps_hook_the_parser_callbacks_uvicorn_defines() -> None:
    """Every method the header caps override exists on uvicorn's httptools protocol, so each override is called."""
    overridden = {"connection_made", "connection_lost", "data_received", "on_message_begin", "on_headers_complete",
                  "on_message_complete"}  # fmt: skip
    assert overridden <= {name for name in vars(HeaderLimitedProtocol) if not name.startswith("_")}
    assert all(callable(getattr(HttpToolsProtocol, name, None)) for name in overridden)


class RecordingTransport:
    """Stands for uvloop's transport: records each call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", (data,)))

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        self.calls.append(("writelines", tuple(parts)))

    def close(self) -> None:
        self.calls.append(("close", ()))

    def is_closing(self) -> bool:
        return False


def _held(loop: asyncio.AbstractEventLoop) -> tuple[RecordingTransport, OneWritePerResponse]:
    transport = RecordingTransport()
    return transport, OneWritePerResponse(cast(asyncio.Transport, transport), loop)


def _one_turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_headers_and_body_written_in_one_turn_go_out_in_one_call() -> None:
    """The header block waits for the body: one writelines of both, and nothing more on the next turn."""
    loop = asyncio.new_event_loop()
    try:
        transport, held = _held(loop)
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        held.write(b"body")
        _one_turn(loop)
    finally:
        loop.close()
    assert transport.calls == [("writelines", (b"HTTP/1.1 200 OK\r\n\r\n", b"body"))]


def test_a_header_block_alone_goes_out_on_the_next_turn() -> None:
    """A response whose body comes later (streamed, slow) gets its headers sent on the loop's next turn."""
    loop = asyncio.new_event_loop()
    try:
        transport, held = _held(loop)
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.calls == []
        _one_turn(loop)
        assert transport.calls == [("write", (b"HTTP/1.1 200 OK\r\n\r\n",))]
        held.write(b"part 1")
        held.write(b"part 2")
    finally:
        loop.close()
    assert transport.calls[1:] == [("write", (b"part 1",)), ("write", (b"part 2",))]


def test_close_sends_what_is_held_first() -> None:
    """Closing right after the first write sends it, then closes (no byte is dropped)."""
    loop = asyncio.new_event_loop()
    try:
        transport, held = _held(loop)
        held.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
        held.close()
        _one_turn(loop)
        assert held.is_closing() is False  # everything else is the transport's
    finally:
        loop.close()
    assert transport.calls == [("write", (b"HTTP/1.1 500 Internal Server Error\r\n\r\n",)), ("close", ())]


def test_a_real_server_sends_a_streamed_responses_headers_before_its_body() -> None:
    """A real uvicorn with HeaderLimitedProtocol: headers held back still reach the client while the body waits.

    Each request's cycle writes through OneWritePerResponse.
    """
    body_may_go = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": f"{message['type']}.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.to_thread(body_may_go.wait, 30)  # released by the test once the client has the headers
        await send({"type": "http.response.body", "body": b"done"})

    port = free_port()
    config = ServerConfig(cast(str, app), header_limits=HeaderLimits(), host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=30, what="the server to start")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            (protocol,) = server.server_state.connections
            assert isinstance(protocol.cycle.transport, OneWritePerResponse)  # type: ignore[attr-defined]
            body_may_go.set()
            rest = head.partition(b"\r\n\r\n")[2]
            while len(rest) < 4:
                rest += sock.recv(4096)
    finally:
        body_may_go.set()
        server.should_exit = True
        thread.join(timeout=30)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.partition(b"\r\n\r\n")[2] == b""  # the body was not sent yet when the headers arrived
    assert rest == b"done"
