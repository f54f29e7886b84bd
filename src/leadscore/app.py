"""Build the application: the one place that wires settings, model, routes and error handling together."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version
from types import FrameType
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from leadscore.api.deps import Lifecycle, State
from leadscore.api.limits import EdgeLimitsMiddleware
from leadscore.api.middleware import RequestContextMiddleware, request_context
from leadscore.api.routes import router, score
from leadscore.api.schemas import ScoreRequest, field_error
from leadscore.api.security import RequireMetricsKey, load_keyring
from leadscore.config import Settings, load_settings
from leadscore.errors import (
    ErrorEnvelope,
    LeadscoreError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from leadscore.lake.errors import LakeError, SpoolFull
from leadscore.lake.sink import LakeSink
from leadscore.model.bundle import Scorer, default_bundle_dir, load_bundle
from leadscore.scoring import PredictionBatcher
from leadscore.telemetry import metrics
from leadscore.telemetry.emf import EmfAggregator, EmfEmitter
from leadscore.telemetry.logging import configure_logging, get_logger

log = get_logger("leadscore.app")


def load_scorer(settings: Settings) -> Scorer:
    """The scorer for the configured bundle (the packaged one unless LEADSCORE_MODEL_DIR is set)."""
    return load_bundle(settings.model_dir or default_bundle_dir(), predictor=settings.predictor)


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
    if not isinstance(exc, LeadscoreError):  # registered for this class only
        raise exc
    if exc.status_code >= 500:
        log.error("request_failed", code=exc.code, error=exc.message)
    return error_response(request, exc)


class LakeSpoolFull(ServiceUnavailable):
    """The lake's spool is at its cap."""

    code = "lake_spool_full"


class LakeWriteFailed(ServiceUnavailable):
    """The lake could not write the rows to its spool."""

    code = "lake_write_failed"


def lake_error(exc: LakeError) -> ServiceUnavailable:
    """The API's answer to an error of the lake (its details go to the log, not to the client)."""
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    if isinstance(exc, SpoolFull):
        return LakeSpoolFull("the data lake is not keeping up; retry later", headers=headers)
    return LakeWriteFailed("the predictions could not be recorded; retry later", headers=headers)


async def _on_lake_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, LakeError):  # registered for this class only
        raise exc
    log.error("lake_refused_request", error=str(exc), cause=repr(exc.__cause__) if exc.__cause__ else None)
    return error_response(request, lake_error(exc))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for this class only
        raise exc
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
    if not isinstance(exc, RequestValidationError):  # registered for this class only
        raise exc
    details = tuple(field_error(dict(e)) for e in exc.errors())
    return error_response(request, ValidationFailed(f"{len(details)} invalid field(s)", details))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Last resort: log the fault with its traceback, answer in the envelope without leaking internals.
    # This runs outside RequestContextMiddleware (after its log context is cleared and past its header
    # injection), so the request id is put on the log line and the response here.
    request_id = request_context(request.scope).request_id
    log.exception("unhandled_error", error_type=type(exc).__name__, request_id=request_id)
    error = LeadscoreError(
        "internal error; the request id identifies it in the logs", headers={"X-Request-ID": request_id}
    )
    return error_response(request, error)


class ScoringFastLane:
    """POSTs to the scoring paths go straight to their handler; every other request goes through FastAPI.

    FastAPI's router, endpoint wrapper and exception layers cost about a sixth of a 1-lead request's CPU, for
    nothing the scoring handler needs: it reads its body and state itself and raises only LeadscoreError, rendered
    here by the same handler FastAPI would call. The FastAPI route stays registered: it is what OpenAPI documents,
    and it answers the other methods (405). Unexpected errors propagate to ServerErrorMiddleware as they would from
    the route. Sits inside the request-context and edge-limit middlewares, so ids, logs, metrics and limits apply.
    A FastAPI dependency added to the scoring route would never run here: tests/test_app.py fails if one is added.
    """

    def __init__(
        self, app: ASGIApp, routes: Mapping[str, APIRoute], handler: Callable[[Request], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.routes = routes
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a scoring POST directly, else hand the request on."""
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the template the request metrics and log line report
        request = Request(scope, receive)
        try:
            response = await self.handler(request)
        except LeadscoreError as exc:
            response = await _on_leadscore_error(request, exc)
        except LakeError as exc:
            response = await _on_lake_error(request, exc)
        await response(scope, receive, send)


def scoring_routes(api: APIRouter, handler: Callable[..., Any]) -> dict[str, APIRoute]:
    """The POST routes of `api` served by `handler`, by path (`api` is included in the app without a prefix)."""
    return {
        route.path: route
        for route in api.routes
        if isinstance(route, APIRoute) and route.endpoint is handler and "POST" in (route.methods or ())
    }


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


def open_lake(settings: Settings) -> LakeSink | None:
    """The lake sink the settings describe (None when the lake is switched off)."""
    return LakeSink(settings.lake_config()) if settings.lake_enabled else None


def tune_gc() -> None:
    """Make garbage collection cheap for a long-running server, once everything long-lived is loaded.

    Everything loaded so far (model, libraries) lives as long as the process: freezing moves it out of the
    collector's view, so full collections under load scan only request garbage; the young generation is
    collected every 50,000 allocations instead of 700. Measured (bench/README.md): 1-lead p99 at 32
    connections 98 ms -> 14 ms (the tail was full collections), throughput +18%; worker RSS ~310 MB.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def drain_on_sigterm(lifecycle: Lifecycle) -> Callable[[], None]:
    """Turn readiness to 503 the moment SIGTERM arrives, then let the server's own handler shut down.

    Returns a function that puts the previous handler back. Only the main thread can handle signals
    (in-process test clients run the app elsewhere: nothing to do there).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        lifecycle.start_draining()
        log.info("sigterm_received_draining")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def prometheus_metrics() -> Response:
    """Prometheus metrics of every worker (text exposition format)."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def _add_middleware_and_handlers(app: FastAPI, settings: Settings, recorder: metrics.Recorder) -> None:
    """Middleware, innermost first, and the error handlers that render every error in the envelope."""
    # Added first, so it runs inside the limits and the request context.
    app.add_middleware(ScoringFastLane, routes=scoring_routes(router, score), handler=score)
    # Added before RequestContextMiddleware, so it runs inside it: its 503/413 carry the request id and are logged.
    app.add_middleware(
        EdgeLimitsMiddleware,
        max_in_flight=settings.max_in_flight,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout_seconds,
    )
    app.add_middleware(RequestContextMiddleware, on_complete=recorder)
    app.add_exception_handler(LeadscoreError, _on_leadscore_error)
    app.add_exception_handler(LakeError, _on_lake_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(Exception, _on_unexpected)


def create_app(settings: Settings, scorer: Scorer | None = None, lake: LakeSink | None = None) -> FastAPI:
    """The ASGI app for `settings`; scorer and lake are built from the settings at start-up unless given.

    Raises ConfigError when the API keys are unusable (e.g. prod without any): a bad deployment never serves.
    """
    keyring = load_keyring(settings)
    emf = EmfAggregator(settings.emf_namespace, settings.env.value) if settings.emf_on else None
    recorder = metrics.Recorder(prometheus=settings.metrics_enabled, emf=emf)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        loaded = scorer or load_scorer(settings)
        log.info("model_loaded", model_version=loaded.version, predictor=loaded.predictor, ready=loaded.ready)
        if keyring.enforced:
            log.info("api_keys_loaded", key_ids=keyring.key_ids)
        else:
            log.warning("api_keys_absent", message="no API keys configured: the API is open (dev only)")
        lifecycle = Lifecycle()
        sink = lake if lake is not None else open_lake(settings)
        if sink is not None:
            sink.start()
            log.info("lake_started", uri=sink.uri, durability=settings.lake_durability)
        restore = drain_on_sigterm(lifecycle)
        tune_gc()
        metrics.set_model_info(loaded.version)
        backlog = asyncio.create_task(metrics.poll_lake_backlog(sink.backlog.totals)) if sink is not None else None
        emitter = None
        if emf is not None:
            emf.model_version = loaded.version
            emitter = EmfEmitter(emf, settings.emf_interval_seconds, metrics.lake_snapshot if sink else lambda: None)
            emitter.start()
        try:
            yield State(
                settings=settings,
                scorer=loaded,
                lifecycle=lifecycle,
                lake=sink,
                keyring=keyring,
                batcher=PredictionBatcher(loaded),
            )
        finally:
            lifecycle.start_draining()
            restore()
            if backlog is not None:
                backlog.cancel()
            if sink is not None:
                await asyncio.to_thread(sink.close, lifecycle.remaining_grace(settings.shutdown_grace_seconds))
                metrics.set_lake_backlog(*sink.backlog.totals())  # what the last flush left behind
            if emitter is not None:
                await emitter.stop()  # after the lake's last flush, so its figures go out too
            metrics.process_exit()

    app = FastAPI(
        title="leadscore",
        version=package_version("leadscore"),
        description="Scores B2B leads 1-5 with an XGBoost model and records every prediction in a data lake.",
        lifespan=lifespan,
        # The service reports through its own Prometheus metrics, EMF and JSON logs. FastAPI's built-in OpenTelemetry
        # hooks would only ask, on every request, whether a provider was configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.include_router(router)
    if settings.metrics_enabled:
        app.add_api_route(
            "/metrics", prometheus_metrics, methods=["GET"], dependencies=[RequireMetricsKey], include_in_schema=False
        )
    _add_middleware_and_handlers(app, settings, recorder)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ASGI servers (`uvicorn --factory leadscore.app:create_app_from_env`)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
