"""The FastAPI application: ``create_app(settings)``; ``auditor serve`` runs it."""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from api import docs, problems
from api.batcher import ScoreBatcher
from api.db import migrate, session_factory
from api.deps import current_tenant, rate_limit
from api.metrics import Metrics, MetricsMiddleware
from api.ratelimit import RateLimit
from api.request_id import HEADER, RequestIdMiddleware, tag_log_lines
from api.routes import audits, health, reference, score, tasks, vendors
from api.routes.score import answer_requests
from api.schemas import Problem as ProblemSchema
from api.scoring_process import ScoringProcess
from api.settings import ServiceSettings, get_service_settings
from api.tiers import FastTier, load_fast_scorer

log = logging.getLogger(__name__)

DESCRIPTION = """\
Every /v1 route needs an API key in the `X-API-Key` header (`auditor keys create --tenant NAME`);
each key sees only its tenant's audits, vendors, tasks and reference index.

Every error is an RFC 9457 `application/problem+json` body (the `Problem` schema) whose `detail`
says what to change. Every answer carries an `X-Request-ID` header (yours, when you send a sane
one; else a new one), which error bodies repeat as `request_id` and the server's log lines carry.
"""


def _load_scorer(settings: ServiceSettings):
    from auditor.scoring import Scorer

    return Scorer(settings, reference=False).setup()


def _load_fast_tier(settings: ServiceSettings, process: ScoringProcess):
    """The process that scores the fast tier, and this process's copy of its model (the model,
    version and threshold every answer names)."""
    process.start()
    return load_fast_scorer(settings)


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


def operation_id(route: APIRoute) -> str:
    """The operation id of a route that sets none: its function's name in camelCase
    (``list_tasks`` -> ``listTasks``). The routes set theirs (``operation_id=``), so that
    renaming a function does not rename an operation clients are generated from."""
    first, *rest = route.name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


class AuditorAPI(FastAPI):
    """FastAPI with the request id outermost (around Starlette's 500 handler, too) and an
    OpenAPI document whose error answers are all the one Problem schema."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            _problems_only(super().openapi())
        return self.openapi_schema  # type: ignore[return-value]  # set by super().openapi()


_REQUEST_ID_HEADER = {
    "description": "the request's id: the client's own X-Request-ID when sane, else a new uuid4 hex",
    "schema": {"type": "string"},
}


def _problems_only(document: dict[str, Any]) -> None:
    """Add the Problem schema, and put it in place of FastAPI's own 422 body (HTTPValidationError,
    which the service never sends: api.problems renders validation errors as Problems); every
    answer documents its X-Request-ID header, and each operation lists its answers by status."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = ProblemSchema.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    fastapi_422 = "#/components/schemas/HTTPValidationError"
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.get("responses", {})
            said_422 = answers.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if said_422.get("$ref") == fastapi_422:
                answers["422"] = problems.problem_responses(422)[422]
            for answer in answers.values():
                answer.setdefault("headers", {})[HEADER] = _REQUEST_ID_HEADER
            operation["responses"] = dict(sorted(answers.items()))
    for fastapi_schema in ("HTTPValidationError", "ValidationError"):  # the second is the first's item
        if f"#/components/schemas/{fastapi_schema}" not in _refs(document):
            schemas.pop(fastapi_schema, None)


def _refs(node: Any) -> set[str]:
    """Every ``$ref`` in a JSON document."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def create_app(settings: ServiceSettings | None = None, load_models: bool = True) -> FastAPI:
    settings = settings or get_service_settings()
    migrate(settings.database)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tag_log_lines()  # logging is configured by now (uvicorn's too)
        if load_models:
            _start_loading(app, settings)
            app.state.fast.start()  # apart from the LM: the fast tier answers while the LM loads
        wait, most = settings.score_batch_wait_ms / 1000, settings.max_texts_per_request
        app.state.batcher = ScoreBatcher(lambda requests: answer_requests(app.state.scorer, requests), wait, most)
        app.state.fast_batcher = ScoreBatcher(app.state.fast_process, wait, most)
        await app.state.batcher.start()
        await app.state.fast_batcher.start()
        yield
        await app.state.batcher.stop()
        await app.state.fast_batcher.stop()
        app.state.fast_process.stop()

    app = AuditorAPI(
        title="LLM contamination auditor",
        version="1",
        summary="Score texts and audit deliveries for LLM-written content.",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.sessions = session_factory(settings.database)
    app.state.scorer = None
    app.state.models = "not loaded"
    # Loaded at start-up with the LM (load_models), else by the first fast-tier request.
    app.state.fast_process = ScoringProcess(settings)
    app.state.fast = FastTier(lambda: _load_fast_tier(settings, app.state.fast_process))
    app.state.model_error = None
    app.state.metrics = Metrics()
    per_minute = settings.rate_limit_per_minute
    app.state.rate_limit = RateLimit(per_minute, settings.redis_url) if per_minute else None
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    problems.install(app)
    _retry_after_header(app)
    # Every /v1 route needs the key (the ApiKey security scheme), whether or not it uses the tenant,
    # and counts against the key's rate limit.
    v1 = APIRouter(
        prefix="/v1",
        dependencies=[Depends(current_tenant), Depends(rate_limit)],
        responses=problems.problem_responses(401, 429, 500),
    )
    for module in (score, audits, tasks, vendors, reference):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(health.router, responses=problems.problem_responses(500))
    docs.install(app)
    return app
