"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.jobs import jobs_by_state
from api.outages import RETRY_AFTER_S
from api.problems import problem_response, problem_responses

router = APIRouter(tags=["health"])


# How long a client waits before asking again while the models load.
LOADING_RETRY_AFTER_S = 5
_METRICS_EXAMPLE = """\
# HELP auditor_texts_scored_total texts scored by /v1/score
# TYPE auditor_texts_scored_total counter
auditor_texts_scored_total 12.0
# HELP auditor_audit_jobs audit jobs by state
# TYPE auditor_audit_jobs gauge
auditor_audit_jobs{state="queued"} 1.0
"""


@router.get(
    "/healthz",
    operation_id="getHealth",
    responses=problem_responses((503, "loading the models failed: restart the process")),
)
def healthz(request: Request):
    """The process is up: 200 while the models load, too (/readyz says when they are loaded)."""
    state = request.app.state
    if state.models == "failed":
        return problem_response(503, f"loading the models failed ({state.model_error}); restart the process")
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="getReadiness",
    responses=problem_responses(
        (503, "not ready: `checks` says why (Retry-After while the models load or the database is unavailable)")
    ),
)
def readyz(request: Request):
    """Ready to serve: the model is loaded and the database answers. ``tiers`` says which scoring
    tiers' models are loaded: the fast tier answers while the LM loads (503 here meanwhile)."""
    state = request.app.state
    tiers = {"lm": state.models, "fast": state.fast.state}
    checks = {"model_loaded": state.scorer is not None}
    try:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:  # noqa: BLE001 - any database failure means not ready
        checks["database"] = False
    if not all(checks.values()):
        failing = ", ".join(k for k, ok in checks.items() if not ok)
        if state.models == "loading":
            failing += " (the models are loading, retry)"
        response = problem_response(503, f"not ready: {failing}", checks=checks, models=state.models, tiers=tiers)
        if state.models == "loading":
            response.headers["Retry-After"] = str(LOADING_RETRY_AFTER_S)
        elif not checks["database"]:  # an outage: the pool reconnects when the database is back
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    return {"status": "ready", **checks, "tiers": tiers}


@router.get(
    "/metrics",
    operation_id="getMetrics",
    response_class=PlainTextResponse,
    response_description="the Prometheus text exposition format",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}, "example": _METRICS_EXAMPLE}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and their latency by route, texts scored, audit jobs by state."""
    state = request.app.state
    try:
        with state.sessions() as session:
            counts = jobs_by_state(session)
        for job_state in ("queued", "running", "succeeded", "failed"):
            state.metrics.jobs.labels(job_state).set(counts.get(job_state, 0))
    except Exception:  # noqa: BLE001 - metrics must answer even when the database does not
        pass
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
