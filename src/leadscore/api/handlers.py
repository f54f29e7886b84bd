"""Error handling at the edge: every error, whoever raises it, rendered once in the one envelope.

`render_error` is the only place an error body is built: the exception handlers below, the scoring fast lane and
the edge-limit middleware all answer through it. Lower layers raise their own errors (the lake's `LakeError`);
`from_lake_error` maps them to HTTP here, and their details stay in the log.
"""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from leadscore.api.middleware import request_context
from leadscore.api.schemas import field_error
from leadscore.errors import (
    ErrorResponse,
    LakeSpoolFull,
    LakeWriteFailed,
    LeadscoreError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    ValidationFailed,
)
from leadscore.lake.errors import LakeError, SpoolFull, SpoolWriteFailed
from leadscore.telemetry.logging import get_logger

log = get_logger("leadscore.api")


def render_error(error: LeadscoreError, request_id: str | None, status_code: int | None = None) -> Response:
    """`error` as a response in the envelope (status `status_code`, else the error's own)."""
    body = ErrorResponse.of(error, request_id).model_dump_json().encode()
    return Response(
        body, status_code=status_code or error.status_code, headers=error.headers, media_type="application/json"
    )


def from_lake_error(exc: LakeError) -> LeadscoreError:
    """The HTTP error for a lake error; what went wrong inside the lake is logged, never sent to the client."""
    if isinstance(exc, SpoolFull):
        log.warning("lake_spool_full", retry_after=exc.retry_after)
        return LakeSpoolFull(
            "the data lake is not keeping up (spool full); retry later", headers=_retry(exc.retry_after)
        )
    log.error("lake_write_failed", error=repr(exc), cause=repr(exc.__cause__) if exc.__cause__ else None)
    retry_after = exc.retry_after if isinstance(exc, SpoolWriteFailed) else 5.0
    return LakeWriteFailed("could not record the predictions durably; retry later", headers=_retry(retry_after))


def _retry(seconds: float) -> dict[str, str]:
    # Retry-After takes whole seconds.
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def handle_error(request: Request, exc: LeadscoreError | LakeError) -> Response:
    """The answer to an error a route raised on purpose (the fast lane calls this too)."""
    error = from_lake_error(exc) if isinstance(exc, LakeError) else exc
    if error.status_code >= 500 and not isinstance(exc, LakeError):
        log.error("request_failed", code=error.code, error=error.message)
    return render_error(error, request_context(request.scope).request_id)


async def _on_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, LeadscoreError | LakeError):  # registered for these classes only
        raise exc
    return handle_error(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):  # registered for this class only
        raise exc
    request_id = request_context(request.scope).request_id
    if exc.status_code == 404:
        return render_error(NotFound(f"no route {request.method} {request.url.path}"), request_id)
    if exc.status_code == 405:
        error = MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}", headers=dict(exc.headers or {})
        )
        return render_error(error, request_id)
    if exc.status_code == 400:
        return render_error(MalformedRequest(str(exc.detail)), request_id)
    return render_error(_HttpError(str(exc.detail), headers=dict(exc.headers or {})), request_id, exc.status_code)


class _HttpError(LeadscoreError):
    """Any other HTTP error the framework raises (its status is the framework's)."""

    code = "http_error"


async def _on_request_validation(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):  # registered for this class only
        raise exc
    details = tuple(field_error(dict(e)) for e in exc.errors())
    error = ValidationFailed(f"{len(details)} invalid field(s)", details)
    return render_error(error, request_context(request.scope).request_id)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Last resort: log the fault with its traceback, answer in the envelope without leaking internals.
    # This runs outside RequestContextMiddleware (after its log context is cleared and past its header
    # injection), so the request id is put on the log line and the response here.
    request_id = request_context(request.scope).request_id
    log.exception("unhandled_error", error_type=type(exc).__name__, request_id=request_id)
    error = LeadscoreError(
        "internal error; the request id identifies it in the logs", headers={"X-Request-ID": request_id}
    )
    return render_error(error, request_id)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that render every error in the envelope."""
    app.add_exception_handler(LeadscoreError, _on_error)
    app.add_exception_handler(LakeError, _on_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(Exception, _on_unexpected)
