"""A request id on every response (``X-Request-ID``) and on every log line written while the
request is served.

The client's own ``X-Request-ID`` is kept when it is sane (1-128 printable ASCII characters
of a URL-safe set), else a new uuid4 hex is made. The id is in a context variable for the
request's duration: Problem bodies carry it as ``request_id``, and the log handlers that
:func:`tag_log_lines` installs on append ``[request_id=...]`` to each line logged meanwhile
(``%(request_id)s`` also works in a format of your own: the filter sets it on every record).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return _current.get()


def choose_request_id(given: str | None) -> str:
    """The client's id when it is sane, else a new one."""
    if given is not None and _SANE.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Outermost ASGI middleware: sets the id for the request (so that the 500 answer of an
    unexpected error and uvicorn's access log line carry it too) and sends it back."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = choose_request_id(given)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        token = _current.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started:
                raise
            # Starlette has already answered 500 (a Problem) and re-raises for the server to log:
            # log it here instead, under the request's id.
            log.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
        finally:
            _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (``-`` outside a request) on every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True


class _TaggedFormatter(logging.Formatter):
    """Another formatter's lines with ``[request_id=...]`` after the message's first line."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        request_id = getattr(record, "request_id", "-")
        if request_id == "-":
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [request_id={request_id}]{newline}{rest}"


LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "api")


def tag_log_lines(loggers: tuple[str, ...] = LOGGERS) -> None:
    """Make the handlers of ``loggers`` (the root's, uvicorn's, ...) tag the lines logged during a
    request with its id. Idempotent; call it once logging is configured (the app's startup)."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if any(isinstance(f, RequestIdFilter) for f in handler.filters):
                continue
            handler.addFilter(RequestIdFilter())
            formatter = handler.formatter or logging.Formatter()
            fmt = getattr(formatter, "_fmt", None) or ""
            if "request_id" not in fmt:
                handler.setFormatter(_TaggedFormatter(formatter))
