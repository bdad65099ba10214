"""Per-API-key rate limit of the ``/v1`` routes: at most ``AUDITOR_RATE_LIMIT_PER_MINUTE``
requests per key in any 60 seconds (a moving window, by the ``limits`` library); the next
one is answered 429 with ``Retry-After`` (seconds until the window has room again) and a
Problem body. The windows live in Redis when ``AUDITOR_REDIS_URL`` is set (shared by every
web process), else in the process's memory. Health, readiness, metrics and the docs are not
under ``/v1`` and are never limited.

A key is limited after it is authenticated (an unknown key is 401, not 429), by its SHA-256
hash (the key itself is never stored). When Redis cannot be reached the request is let
through and a warning logged (at most once a minute), and Redis is not asked again for
:data:`PAUSE_SECONDS` (no request waits on a dead Redis twice in a row): the limit guards against
abuse, and an outage of its store should not take the service down with it."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from api.problems import Problem

log = logging.getLogger(__name__)

NAMESPACE = "auditor-api-key"  # the limit's key in the storage: LIMITS/<NAMESPACE>/<key hash> ...
_WARN_EVERY_SECONDS = 60.0
PAUSE_SECONDS = 5.0  # after its store failed, the limit is not applied for this long
_REDIS_TIMEOUTS = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}


class RateLimit:
    """``per_minute`` requests per API key in any 60 s; ``redis_url``: the shared store (else memory)."""

    def __init__(self, per_minute: int, redis_url: str | None = None):
        self.item = RateLimitItemPerMinute(per_minute, namespace=NAMESPACE)
        self.redis_url = redis_url
        # Async storages hold locks and connections of the event loop that made them: one per loop
        # (a served process has one; tests may run several).
        self._limiters: dict[asyncio.AbstractEventLoop, MovingWindowRateLimiter] = {}
        self._warned_at = -math.inf
        self._paused_until = -math.inf

    def _storage(self) -> Storage:
        if self.redis_url:
            uri = "async+" + self.redis_url.split("#", 1)[0]
            return RedisStorage(
                uri, implementation="redispy", wrap_exceptions=True, key_prefix="auditor-limits", **_REDIS_TIMEOUTS
            )
        return MemoryStorage()

    def _limiter(self) -> MovingWindowRateLimiter:
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            for stale in [other for other in self._limiters if other.is_closed()]:
                del self._limiters[stale]
            limiter = self._limiters[loop] = MovingWindowRateLimiter(self._storage())
        return limiter

    async def check(self, key_hash: str) -> None:
        """Count one request of the key; 429 (with ``retry_after``) when it is over the limit."""
        if time.monotonic() < self._paused_until:
            return
        limiter = self._limiter()
        try:
            if await limiter.hit(self.item, key_hash):
                return
            stats = await limiter.get_window_stats(self.item, key_hash)
        except StorageError as exc:
            now = time.monotonic()
            self._paused_until = now + PAUSE_SECONDS
            if now - self._warned_at >= _WARN_EVERY_SECONDS:
                self._warned_at = now
                log.warning("rate limit not applied: its store cannot be reached (%s)", exc.storage_error)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        per_minute = self.item.amount
        raise Problem(
            429,
            f"this API key sent more than {per_minute} requests in the last 60 seconds; "
            f"retry in {retry_after} s (the limit is per key: AUDITOR_RATE_LIMIT_PER_MINUTE)",
            limit=per_minute,
            retry_after=retry_after,
        )
