"""The FastAPI application: ``create_app(settings)``; ``auditor serve`` runs it."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from api import problems
from api.batcher import ScoreBatcher
from api.db import migrate, session_factory
from api.metrics import Metrics, MetricsMiddleware
from api.routes import audits, health, reference, score, vendors
from api.settings import ServiceSettings, get_service_settings

log = logging.getLogger(__name__)


def _load_scorer(settings: ServiceSettings):
    from auditor.scoring import Scorer

    return Scorer(settings, reference=False).setup()


def create_app(settings: ServiceSettings | None = None, load_models: bool = True) -> FastAPI:
    settings = settings or get_service_settings()
    migrate(settings.database)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if load_models:
            app.state.scorer = await asyncio.to_thread(_load_scorer, settings)
            app.state.scorer.detect(["warm-up text for the scoring kernels."])
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
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    problems.install(app)
    v1 = APIRouter(prefix="/v1")
    for module in (score, audits, vendors, reference):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(health.router)
    return app
