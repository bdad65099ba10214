"""Prometheus metrics: requests, latencies, texts scored, jobs by state."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request

# Seconds, from a health check (a few ms) to scoring a full batch on CPU or a large upload
# (minutes): above 10 s the old buckets told nothing but "slow".
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "auditor_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "auditor_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.texts_scored = Counter("auditor_texts_scored_total", "texts scored by /v1/score", registry=self.registry)
        self.jobs = Gauge("auditor_audit_jobs", "audit jobs by state", ["state"], registry=self.registry)


class MetricsMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, metrics: Metrics):
        super().__init__(app)
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        self.metrics.latency.labels(request.method, path).observe(time.perf_counter() - started)
        self.metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        return response
