"""Outages of what the service depends on (the database, Redis), told apart from its own errors.

An outage is temporary and nobody's mistake: the web process answers a request it interrupts
with 503 and ``Retry-After`` (``api.problems``), a worker keeps its job to retry it instead of
failing it (``api.jobs``). The connections recover by themselves: the database pool checks a
connection before it lends it (``pool_pre_ping``), redis-py reconnects on the next command."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# Seconds a client is asked to wait before retrying a request an outage interrupted.
RETRY_AFTER_S = 5
# How long `auditor serve` keeps an idle connection open: longer than a client waits before its retry.
KEEP_ALIVE_S = 4 * RETRY_AFTER_S

_DATABASE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def _redis_errors() -> tuple[type[Exception], ...]:
    try:
        from redis import exceptions
    except ImportError:  # pragma: no cover - Redis is optional (the service extra has it)
        return ()
    return (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.BusyLoadingError)


REDIS_ERRORS = _redis_errors()
OUTAGE_ERRORS: tuple[type[Exception], ...] = _DATABASE + REDIS_ERRORS


def unavailable(error: BaseException | None, depth: int = 0) -> str | None:
    """What an exception (or the exception it was raised from) says is unavailable: "the
    database", "Redis"; None when it is no outage."""
    if error is None or depth > 5:
        return None
    if isinstance(error, _DATABASE) or (isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated):
        return "the database"
    if REDIS_ERRORS and isinstance(error, REDIS_ERRORS):
        return "Redis"
    return unavailable(error.__cause__ or error.__context__, depth + 1)


def outage_detail(what: str) -> str:
    return f"{what} is unavailable for the moment; nothing was changed by this request, retry in {RETRY_AFTER_S} s"
