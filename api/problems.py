"""Errors as RFC 9457 ``application/problem+json`` with a message a person can act on."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.outages import OUTAGE_ERRORS, RETRY_AFTER_S, outage_detail, unavailable
from api.request_id import current_request_id

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
# The body of every error answer, documented once in the OpenAPI components (api.schemas.Problem).
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"

_SAID = {
    400: "the body cannot be parsed (a malformed multipart upload, say)",
    401: "the X-API-Key header is missing, or the key is unknown, revoked or expired",
    404: "not found for this API key",
    409: "conflicts with the resource's state",
    413: "over the service's size limit (`limit` says which)",
    415: "a content type or file format the route does not take",
    422: "the request does not match the API (`errors` says where) or its content cannot be used",
    429: "this API key sent more requests than its rate limit allows (`limit` per minute); retry after Retry-After",
    500: "an unexpected error; the server log has the details under the request id",
    503: "the models are loading or the database or Redis is unavailable (both with Retry-After), or the models failed to load",
}


class Problem(Exception):  # noqa: N818 - named after RFC 9457 "problem details", which it renders
    def __init__(self, status: int, detail: str, title: str | None = None, **extra):
        self.status, self.detail, self.extra = status, detail, extra
        self.title = title or HTTPStatus(status).phrase


def problem_response(
    status: int, detail: str, title: str | None = None, instance: str | None = None, **extra
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    if instance:
        body["instance"] = instance
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def problem_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's error answers, each an ``application/problem+json``
    Problem: a status alone has the generic description, ``(status, description)`` its own."""
    documented: dict[int | str, dict[str, Any]] = {}
    for entry in statuses:
        status, description = entry if isinstance(entry, tuple) else (entry, _SAID[entry])
        documented[status] = {
            "description": description,
            "content": {PROBLEM: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        }
    return documented


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.detail, exc.title, str(request.url.path), **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem_response(exc.status_code, str(exc.detail), instance=str(request.url.path))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [
            {
                "location": ".".join(str(p) for p in e.get("loc", ())),
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        said = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem_response(
            422, f"the request does not match the API: {said}", errors=errors, instance=str(request.url.path)
        )

    async def _outage(request: Request, exc: Exception):
        """The database or Redis is down or restarting: 503 with Retry-After, never a 500."""
        what = unavailable(exc) or "a service this one depends on"
        log.warning("%s unavailable: %s: %s", what, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        response = problem_response(503, outage_detail(what), instance=str(request.url.path), retry_after=RETRY_AFTER_S)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    for outage in OUTAGE_ERRORS:
        app.add_exception_handler(outage, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return problem_response(
            500,
            f"internal error ({type(exc).__name__}); the server log has the details",
            instance=str(request.url.path),
        )
