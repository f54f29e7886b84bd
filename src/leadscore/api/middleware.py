"""Request context: request id, JSON summary line per request, `X-Request-ID` on every response.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which copies every body through a task).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadscore.scoring import ScoredBatch
from leadscore.telemetry.logging import get_logger

# The one definition of a request id, whether it comes in the X-Request-ID header or the body's `request_id`.
REQUEST_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
_REQUEST_ID: Final = re.compile(REQUEST_ID_PATTERN)
REQUEST_CONTEXT: Final = "leadscore"
log = get_logger("leadscore.request")


def is_request_id(text: str) -> bool:
    """Whether `text` is a well-formed request id."""
    return _REQUEST_ID.fullmatch(text) is not None


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, 128 random bits (as a UUID4's hex, at a quarter of its cost)."""
    return secrets.token_hex(16)


class RequestContext:
    """Per-request facts that the route fills in and the summary line reports."""

    __slots__ = ("api_key_id", "batch", "leads", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.leads = 0
        # The scored batch, for the metrics recorded when the request ends.
        self.batch: ScoredBatch | None = None
        # Id (never the key) of the API key that authenticated the request; None when open or refused.
        self.api_key_id: str | None = None

    def set_request_id(self, request_id: str) -> None:
        """Adopt the id the caller gave in the body; later log lines and the response carry it."""
        self.request_id = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)


def request_context(scope: Scope) -> RequestContext:
    """The context of the request in `scope` (set by RequestContextMiddleware)."""
    ctx = scope.get("state", {}).get(REQUEST_CONTEXT)
    if isinstance(ctx, RequestContext):
        return ctx
    return RequestContext(new_request_id())


# Called once per finished request: (method, route template or None, status, seconds, scored batch or None).
RequestObserver = Callable[[str, str | None, int, float, ScoredBatch | None], None]


class RequestContextMiddleware:
    """Binds a request id to the logs, echoes it as `X-Request-ID`, and logs one summary line."""

    def __init__(self, app: ASGIApp, on_complete: RequestObserver | None = None) -> None:
        self.app = app
        self.on_complete = on_complete

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its context bound; log the summary line whatever happens."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        header_id = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        ctx = RequestContext(header_id if header_id and is_request_id(header_id) else new_request_id())
        scope.setdefault("state", {})[REQUEST_CONTEXT] = ctx
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=ctx.request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-request-id", ctx.request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            if self.on_complete is not None:
                self.on_complete(scope["method"], getattr(route, "path", None), status, elapsed, ctx.batch)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=getattr(route, "path", scope["path"]),
                status=status,
                leads=ctx.leads,
                api_key_id=ctx.api_key_id,
                duration_ms=round(elapsed * 1000.0, 3),
            )
            structlog.contextvars.clear_contextvars()
