"""The FastAPI application: ``create_app(settings)``; ``auditor serve`` runs it."""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

from api import problems
from api.batcher import ScoreBatcher
from api.db import migrate, session_factory
from api.metrics import Metrics, MetricsMiddleware
from api.routes import audits, health, reference, score, tasks, vendors
from api.settings import ServiceSettings, get_service_settings

log = logging.getLogger(__name__)


def _load_scorer(settings: ServiceSettings):
    from auditor.scoring import Scorer

    return Scorer(settings, reference=False).setup()


def _start_loading(app: FastAPI, settings: ServiceSettings) -> None:
    """Load the models in a background thread, so that the server answers at once: /healthz
    is 200 meanwhile, /readyz and the routes that need the models answer 503 with Retry-After
    (``app.state.models``: loading, loaded or failed; a failure also fails /healthz)."""

    def load() -> None:
        started = time.monotonic()
        try:
            scorer = _load_scorer(settings)
            scorer.detect(["warm-up text for the scoring kernels."])
        except Exception as exc:  # noqa: BLE001 - reported by /healthz and /readyz, and logged
            log.exception("loading the models failed")
            app.state.model_error = f"{type(exc).__name__}: {exc}"
            app.state.models = "failed"
            return
        app.state.scorer = scorer
        app.state.models = "loaded"
        log.info("models loaded in %.1f s; ready", time.monotonic() - started)

    app.state.models = "loading"
    # A daemon thread: stopping the server while the models load does not wait for them.
    threading.Thread(target=load, name="load-models", daemon=True).start()


def _retry_after_header(app: FastAPI) -> None:
    """A problem raised with ``retry_after=SECONDS`` (the models are loading, say) also carries
    the Retry-After header that HTTP clients and proxies act on."""
    render = app.exception_handlers[problems.Problem]

    async def with_header(request: Request, exc: Exception):
        response = render(request, exc)
        if inspect.isawaitable(response):
            response = await response
        retry_after = getattr(exc, "extra", {}).get("retry_after")
        if retry_after is not None:
            response.headers["Retry-After"] = str(math.ceil(float(retry_after)))
        return response

    app.add_exception_handler(problems.Problem, with_header)


def create_app(settings: ServiceSettings | None = None, load_models: bool = True) -> FastAPI:
    settings = settings or get_service_settings()
    migrate(settings.database)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if load_models:
            _start_loading(app, settings)
        app.state.batcher = ScoreBatcher(
            lambda texts: app.state.scorer.detect(texts),
            settings.score_batch_wait_ms / 1000,
            settings.max_texts_per_request,
        )
        await app.state.batcher.start()
        yield
        await app.state.batcher.stop()

    app = FastAPI(
        title="LLM contamination auditor",
        version="1",
        summary="Score texts and audit deliveries for LLM-written content.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = session_factory(settings.database)
    app.state.scorer = None
    app.state.models = "not loaded"
    app.state.model_error = None
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    problems.install(app)
    _retry_after_header(app)
    v1 = APIRouter(prefix="/v1")
    for module in (score, audits, tasks, vendors, reference):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(health.router)
    return app
