"""Build the application: the one place that wires settings, model, routes and error handling together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from leadscore.api.deps import Lifecycle, State
from leadscore.api.fastlane import ScoringFastLane, scoring_routes
from leadscore.api.handlers import install_error_handlers
from leadscore.api.limits import EdgeLimitsMiddleware
from leadscore.api.middleware import RequestContextMiddleware
from leadscore.api.openapi import install_openapi
from leadscore.api.outcomes import OutcomeSinkSlot, install_outcomes_openapi, outcomes_router
from leadscore.api.routes import prometheus_metrics, router, score
from leadscore.api.security import RequireMetricsKey, load_keyring
from leadscore.config import Settings, load_settings
from leadscore.lake.sink import LakeSink
from leadscore.model.bundle import Scorer, default_bundle_dir, load_bundle
from leadscore.runtime import leave_out_pandas, on_sigterm, tune_gc
from leadscore.scoring import PredictionBatcher
from leadscore.telemetry import metrics
from leadscore.telemetry.emf import EmfAggregator, EmfEmitter
from leadscore.telemetry.logging import configure_logging, get_logger

log = get_logger("leadscore.app")


def load_scorer(settings: Settings) -> Scorer:
    """The scorer for the configured bundle (the packaged one unless LEADSCORE_MODEL_DIR is set)."""
    return load_bundle(
        settings.model_dir or default_bundle_dir(),
        predictor=settings.predictor,
        category_map=settings.category_map_file,
        # A service that explains only on request builds the explainer then: its ~120 MiB (numba included) stay
        # out of workers that never explain (the default ECS task must hold the whole service in 1 GiB).
        warm_explainer=settings.explainer_at_start or settings.explain_default,
        walk_small_calls=settings.walk_small_calls,
    )


def open_lake(settings: Settings) -> LakeSink | None:
    """The lake sink the settings describe (None when the lake is switched off)."""
    return LakeSink(settings.lake_config()) if settings.lake_enabled else None


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
    install_error_handlers(app)


def _pollers(settings: Settings, sink: LakeSink | None) -> list[asyncio.Task[None]]:
    """The lifespan's periodic tasks: the lake's backlog gauges, and the requests' figures written in bulk."""
    pollers = []
    if sink is not None:
        pollers.append(asyncio.create_task(metrics.poll_lake_backlog(sink.backlog.totals)))
    if settings.metrics_enabled:  # written every metrics.FLUSH_SECONDS, so an idle worker's last requests count too
        pollers.append(asyncio.create_task(metrics.flush_periodically()))
    return pollers


def create_app(settings: Settings, scorer: Scorer | None = None, lake: LakeSink | None = None) -> FastAPI:
    """The ASGI app for `settings`; scorer and lake are built from the settings at start-up unless given.

    Raises ConfigError when the API keys are unusable (e.g. prod without any): a bad deployment never serves.
    """
    keyring = load_keyring(settings)
    outcomes = OutcomeSinkSlot()
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
            outcomes.open(settings)
        restore = on_sigterm(lifecycle.start_draining)
        tune_gc()
        metrics.set_model_info(loaded.version)
        pollers = _pollers(settings, sink)
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
                outcomes=outcomes.sink,
                keyring=keyring,
                batcher=PredictionBatcher(loaded),
            )
        finally:
            lifecycle.start_draining()
            restore()
            for poller in pollers:
                poller.cancel()
            if sink is not None:
                await asyncio.to_thread(outcomes.close, lifecycle.remaining_grace(settings.shutdown_grace_seconds))
                await asyncio.to_thread(sink.close, lifecycle.remaining_grace(settings.shutdown_grace_seconds))
                metrics.set_lake_backlog(*sink.backlog.totals())  # what the last flush left behind
            if emitter is not None:
                await emitter.stop()  # after the lake's last flush, so its figures go out too
            metrics.process_exit()

    # Swagger UI and ReDoc from the package's own files: the docs work where the public CDN cannot be reached.
    app = FastAPIOffline(
        title="leadscore",
        version=package_version("leadscore"),
        description="Scores B2B leads 1-5 with an XGBoost model and records every prediction in a data lake.",
        lifespan=lifespan,
        # The service reports through its own Prometheus metrics, EMF and JSON logs. FastAPI's built-in OpenTelemetry
        # hooks would only ask, on every request, whether a provider was configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # A trailing slash is a 404, not a redirect whose Location would echo the client's Host header.
        redirect_slashes=False,
    )
    app.include_router(router)
    app.include_router(outcomes_router(outcomes))
    if settings.metrics_enabled:
        app.add_api_route(
            "/metrics", prometheus_metrics, methods=["GET"], dependencies=[RequireMetricsKey], include_in_schema=False
        )
    _add_middleware_and_handlers(app, settings, recorder)
    install_openapi(app)
    install_outcomes_openapi(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ASGI servers (`uvicorn --factory leadscore.app:create_app_from_env`): the process is theirs."""
    leave_out_pandas()
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
