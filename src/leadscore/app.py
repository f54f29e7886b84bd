"""Build the application: the one place that wires settings, model, routes and error handling together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadscore.api.deps import Lifecycle, State
from leadscore.api.middleware import RequestContextMiddleware, request_context
from leadscore.api.routes import router
from leadscore.api.schemas import ScoreRequest, field_error
from leadscore.config import Settings, load_settings
from leadscore.errors import (
    ErrorEnvelope,
    LeadscoreError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    ValidationFailed,
)
from leadscore.model.bundle import Scorer, default_bundle_dir, load_bundle
from leadscore.telemetry.logging import configure_logging, get_logger

log = get_logger("leadscore.app")


def load_scorer(settings: Settings) -> Scorer:
    """The scorer for the configured bundle (the packaged one unless LEADSCORE_MODEL_DIR is set)."""
    return load_bundle(settings.model_dir or default_bundle_dir())


def error_response(request: Request, error: LeadscoreError) -> JSONResponse:
    """Render any error in the one envelope."""
    envelope = ErrorEnvelope(
        code=error.code,
        message=error.message,
        request_id=request_context(request.scope).request_id,
        errors=error.errors,
    )
    return JSONResponse(envelope.as_dict(), status_code=error.status_code, headers=error.headers)


async def _on_leadscore_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LeadscoreError)  # noqa: S101 - registered for this class only
    if exc.status_code >= 500:
        log.error("request_failed", code=exc.code, error=exc.message)
    return error_response(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this class only
    error: LeadscoreError
    if exc.status_code == 404:
        error = NotFound(f"no route {request.method} {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        error.headers.update(exc.headers or {})
    elif exc.status_code == 400:
        error = MalformedRequest(str(exc.detail))
    else:
        error = LeadscoreError(str(exc.detail))
        return JSONResponse(
            ErrorEnvelope("http_error", str(exc.detail), request_context(request.scope).request_id).as_dict(),
            status_code=exc.status_code,
            headers=exc.headers,
        )
    return error_response(request, error)


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    details = tuple(field_error(dict(e)) for e in exc.errors())
    return error_response(request, ValidationFailed(f"{len(details)} invalid field(s)", details))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Last resort: log the fault with its traceback, answer in the envelope without leaking internals.
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return error_response(request, LeadscoreError("internal error; the request id identifies it in the logs"))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    # The scoring route parses its body itself (fast path), so its schema is added to the components here.
    request_schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(request_schema.pop("$defs", {}))
    components["ScoreRequest"] = request_schema
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings, scorer: Scorer | None = None) -> FastAPI:
    """The ASGI app for `settings`; the scorer is loaded at start-up unless one is given."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        loaded = scorer or load_scorer(settings)
        log.info("model_loaded", model_version=loaded.version, predictor=loaded.predictor, ready=loaded.ready)
        lifecycle = Lifecycle()
        yield State(settings=settings, scorer=loaded, lifecycle=lifecycle)
        lifecycle.draining = True

    app = FastAPI(
        title="leadscore",
        version=package_version("leadscore"),
        description="Scores B2B leads 1-5 with an XGBoost model and records every prediction in a data lake.",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.add_middleware(RequestContextMiddleware)
    app.add_exception_handler(LeadscoreError, _on_leadscore_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(Exception, _on_unexpected)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ASGI servers (`uvicorn --factory leadscore.app:create_app_from_env`)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
