"""Edge limits for every request: a per-worker cap on requests in flight, a body size cap and a body deadline.

A pure ASGI middleware: over the in-flight cap a request gets an immediate 503 with `Retry-After` instead of
waiting in an unbounded queue; the body is counted as it arrives, so neither a missing nor a lying
Content-Length gets more than `max_body_bytes` into memory, and a client that trickles its body is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadscore.api.handlers import render_error
from leadscore.api.middleware import request_context
from leadscore.errors import (
    ClientClosedRequest,
    LeadscoreError,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)

# Probes and scrapes stay answerable under overload: a load balancer that saw failing health checks would
# replace busy tasks and make the overload worse.
UNCAPPED_PATHS: Final = frozenset({"/api/v1/health/live", "/api/v1/health/ready", "/metrics"})
RETRY_AFTER_SECONDS: Final = 1
# A client sending a body over the cap is still sending when the 413 is ready: closing the connection with its bytes
# unread makes the kernel reset it, and the client sees a reset instead of the 413. Up to this many bytes (and
# within the body deadline) are read and dropped first; a longer body gets the 413 and the close.
DRAIN_MAX_BYTES: Final = 8 * 1024 * 1024


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The HTTP server has already refused a malformed value; this guards in-process callers.
            return int(value) if value.isdigit() else None
    return None


async def send_error(scope: Scope, receive: Receive, send: Send, error: LeadscoreError) -> None:
    """Answer with `error` in the envelope without calling the app."""
    await render_error(error, request_context(scope).request_id)(scope, receive, send)


class EdgeLimitsMiddleware:
    """Caps requests in flight (per worker), body bytes, and the time to send a body."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, max_body_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        # One event loop per worker: a plain counter is enough.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse over the caps, else pass the request on with a counting, deadline-bound `receive`."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        capped = scope["path"] not in UNCAPPED_PATHS
        if capped and self.in_flight >= self.max_in_flight:
            await send_error(
                scope,
                receive,
                send,
                ServiceUnavailable(
                    f"over capacity ({self.max_in_flight} requests in flight); retry shortly",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                ),
            )
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            if declared <= DRAIN_MAX_BYTES:
                await self._drain(receive, 0)
            await send_error(scope, receive, send, self._too_large(f"body of {declared} bytes"))
            return
        if capped:
            self.in_flight += 1
        try:
            await self.app(scope, self._limited(receive), send)
        finally:
            if capped:
                self.in_flight -= 1

    def _too_large(self, what: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"{what} is over the limit of {self.max_body_bytes} bytes")

    async def _drain(self, receive: Receive, received: int) -> None:
        """Read and drop the rest of the body, up to DRAIN_MAX_BYTES in all and within the body deadline."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.body_timeout):
                while received <= DRAIN_MAX_BYTES:
                    message = await receive()
                    if message["type"] != "http.request":
                        return
                    received += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that counts body bytes and enforces the body deadline; raises into the route reading it."""
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        received = 0
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                # After the body only http.disconnect can come; waiting for it must not time out.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError as exc:
                raise RequestTimeout(f"the body did not arrive within {self.body_timeout:g} s") from exc
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    if message.get("more_body", False):
                        await self._drain(receive, received)
                    raise self._too_large("body")
                body_done = not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                # A client timing out mid-upload is routine: a 499 line in the logs, not a 500 with a traceback.
                raise ClientClosedRequest("the client closed the connection before sending its whole body")
            return message

        return limited_receive
