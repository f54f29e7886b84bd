"""Patches of library internals that offer no public hook, kept here and nowhere else.

Each is pinned to the library version it was written against (tests/test__compat.py fails on another version, so
an upgrade re-checks them):

- uvicorn's httptools protocol caps neither the size of a request's headers nor the time to send them: one client
  could send 8 MiB of headers, and slow clients (slowloris) could hold connections open forever.
  `HeaderLimitedProtocol` adds both caps (431, 408) around the parser callbacks.
- uvicorn's httptools protocol writes a response's status line and headers, then its body, each with its own
  `transport.write`, and uvloop sends each at once: two socket writes per response. `OneWritePerResponse` holds
  the first back until the next, so the two go out in one write (`HeaderLimitedProtocol` gives each request's cycle
  one).
- uvicorn's multi-worker supervisor shares one listening socket between its workers; `ReusePortWorkers` gives each
  worker its own SO_REUSEPORT socket (leadscore.serving says why), keeping uvicorn's supervision.
"""

from __future__ import annotations

import asyncio
import http
from dataclasses import dataclass
from typing import Any, Final, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from leadscore.errors import HeadersTooLarge, LeadscoreError, RequestTimeout

PATCHED_UVICORN: Final = "0.54.0"


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Most bytes of a request's request line and headers, and most seconds to send them."""

    max_bytes: int = 32 * 1024
    timeout_seconds: float = 10.0


class ServerConfig(uvicorn.Config):
    """uvicorn's config, serving HTTP/1.1 through `HeaderLimitedProtocol` with `header_limits`."""

    def __init__(self, app: str, *, header_limits: HeaderLimits, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(app, http=HeaderLimitedProtocol, **kwargs)
        self.header_limits = header_limits


def _raw_response(error: LeadscoreError) -> bytes:
    """`error` as bytes on the wire, in the envelope, closing the connection (no ASGI app ran: no request yet)."""
    # Imported here: a worker unpickles its config, and so imports this module, before it answers uvicorn's health
    # pings (5 s); the API's modules bring in the model stack, which takes longer than that on a busy machine.
    from leadscore.api.handlers import render_error  # noqa: PLC0415
    from leadscore.api.middleware import new_request_id  # noqa: PLC0415

    response = render_error(error, new_request_id())
    lines = [f"HTTP/1.1 {response.status_code} {http.HTTPStatus(response.status_code).phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    return b"".join([*lines, b"connection: close\r\n\r\n", response.body])


class OneWritePerResponse:
    """The transport of one request's response cycle: its first write waits for the second, to go out with it.

    uvicorn writes the status line and headers, then the body: two `send` calls per response, made with the GIL
    held, were 15% and 8% of a 1-lead request's Python samples (py-spy, 32 connections). Held back, the header block
    goes out with the body in one `writelines` (one writev in uvloop, the body not copied): +8% 1-lead requests/s
    in a same-run A/B (bench/README.md, sixth round). A response whose body is not written in the same turn of the
    event loop (streamed, slow) gets its headers sent on the next turn, as does a lone `100 Continue`; `close`
    sends what is held first. Everything else is the connection's transport's.
    """

    __slots__ = ("_first", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        """The first write is held (until the next write or the next loop turn); later ones go out at once."""
        if self._first:
            self._first = False
            self._held = data
            self._loop.call_soon(self._flush)
            return
        held, self._held = self._held, None
        if held is None:
            self._transport.write(data)
        else:
            self._transport.writelines((held, data))

    def close(self) -> None:
        """Send what is held, then close the connection (uvloop sends what it buffered before closing)."""
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._transport.write(held)

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the transport's own attributes
        return getattr(self._transport, name)


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing headers over `max_bytes` (431) or slower than `timeout_seconds` (408).

    Bytes are counted as they arrive, before the parser buffers them, so an over-long header costs at most the cap
    plus one read. The deadline runs from the connection's first moment (or, on a kept-alive connection, from the
    next request's first byte) to the end of its headers; an idle kept-alive connection is uvicorn's keep-alive
    timeout's business.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = config.header_limits if isinstance(config, ServerConfig) else HeaderLimits()
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline with the connection."""
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the header deadline with the connection."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count header bytes; refuse once the headers still incomplete are over the cap."""
        counting = self._awaiting_headers
        if counting:
            self._header_bytes += len(data)
        super().data_received(data)
        if counting and self._awaiting_headers and self._header_bytes > self._limits.max_bytes:
            self._refuse(HeadersTooLarge(f"request headers are over the limit of {self._limits.max_bytes} bytes"))

    def on_message_begin(self) -> None:
        """A request starts: its headers get the deadline (unless the connection's first one still runs)."""
        super().on_message_begin()
        self._awaiting_headers = True
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        """Headers in: no more counting or deadline for this request; its response goes out in one write."""
        self._awaiting_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new response cycle (not an upgrade), its task not started yet
            self.cycle.transport = cast(asyncio.Transport, OneWritePerResponse(self.transport, self.loop))

    def on_message_complete(self) -> None:
        """The request is in; bytes from here on belong to the next request's headers."""
        super().on_message_complete()
        self._awaiting_headers = True

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._limits.timeout_seconds, self._on_header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self._awaiting_headers:
            self._refuse(
                RequestTimeout(f"the request headers did not arrive within {self._limits.timeout_seconds:g} s")
            )

    def _refuse(self, error: LeadscoreError) -> None:
        if self.transport.is_closing():
            return
        self.logger.warning("refused a request at its headers: %s", error.message)
        self.transport.write(_raw_response(error))
        self.transport.close()


class ReusePortWorkers(Multiprocess):
    """uvicorn's supervisor, starting worker i on socket i; a replacement worker listens on all of them."""

    def init_processes(self) -> None:
        """Start one worker per socket."""
        for sock in self.sockets:
            process = Process(self.config, [sock])
            process.start()
            self.processes.append(process)
