"""Rate limiting on the `limits` library: Redis storage when configured, memory otherwise."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from sellerdesk.errors import RateLimited, ServiceUnavailable

log = structlog.get_logger(__name__)


def create_storage(redis_url: str | None, key_prefix: str = "sellerdesk") -> Storage:
    """Redis (shared by every process) when a URL is given, else this process's memory."""
    if redis_url:
        uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        return RedisStorage(
            uri, implementation="redispy", key_prefix=key_prefix, wrap_exceptions=True
        )
    return MemoryStorage()


class Limiter:
    """A moving-window limiter over one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)

    async def retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self.strategy.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))


_LOGIN = "login-failures"


class LoginThrottle:
    """Refuses logins after too many failures per email or IP; fails closed if storage is down.

    Each attempt is counted against its email *before* the password is checked, in one atomic
    hit, so a burst of concurrent guesses cannot overshoot the limit; a successful login clears
    the email's count again (the password was known). The IP count is taken after a failure, so
    successful logins from a shared address never count.
    """

    def __init__(self, limiter: Limiter, limit: str) -> None:
        self.limiter = limiter
        self.item = parse(limit)

    async def begin(self, email: str, ip: str) -> None:
        """Admit one attempt or raise 429 when the email or the IP is over the failure limit."""
        async with self._storage_errors():
            ip_key, email_key = f"ip:{ip}", f"email:{email}"
            if not await self.limiter.strategy.test(self.item, _LOGIN, ip_key):
                await self._refuse(ip_key)
            if not await self.limiter.strategy.hit(self.item, _LOGIN, email_key):
                await self._refuse(email_key)

    async def record_failure(self, ip: str) -> None:
        """The attempt failed: count it against the IP (the email counted it in `begin`)."""
        async with self._storage_errors():
            await self.limiter.strategy.hit(self.item, _LOGIN, f"ip:{ip}")

    async def record_success(self, email: str) -> None:
        """The password was right: forget the email's failures."""
        async with self._storage_errors():
            await self.limiter.strategy.clear(self.item, _LOGIN, f"email:{email}")

    async def _refuse(self, key: str) -> None:
        retry = await self.limiter.retry_after(self.item, _LOGIN, key)
        raise RateLimited(retry, "Too many failed logins; retry later.")

    @asynccontextmanager
    async def _storage_errors(self) -> AsyncIterator[None]:
        try:
            yield
        except RateLimited:
            raise
        except Exception as exc:
            log.error("login_throttle_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Login is temporarily unavailable; retry later.") from exc


class Quota:
    """Where a payer stands after a counted call: sent as `X-RateLimit-*` headers."""

    __slots__ = ("limit", "remaining")

    def __init__(self, limit: int, remaining: int) -> None:
        self.limit = limit
        self.remaining = max(0, remaining)

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}


class PaidCallLimits:
    """Per-payer and global moving-window limits of the paid data routes.

    Redis down: the data routes fail open to this process's own memory with the same limits
    (a per-process cap), so an outage of the limiter's store neither stops paid traffic nor
    lifts every limit. The login throttle, by contrast, fails closed.
    """

    LOG_EVERY_SECONDS = 10.0

    def __init__(self, limiter: Limiter, per_payer: str, global_limit: str) -> None:
        self.limiter = limiter
        self.per_payer = parse(per_payer)
        self.global_limit = parse(global_limit)
        self.fallback = Limiter(MemoryStorage())
        self._logged_at = float("-inf")

    async def hit(self, payer: str) -> Quota:
        """Count one call of `payer`; 429 with `Retry-After` when over either limit."""
        try:
            return await self._hit(self.limiter, payer)
        except RateLimited:
            raise
        except Exception as exc:
            if time.monotonic() - self._logged_at > self.LOG_EVERY_SECONDS:
                self._logged_at = time.monotonic()
                log.error("paid_rate_limit_storage_unavailable", error=type(exc).__name__)
            return await self._hit(self.fallback, payer)

    async def _hit(self, limiter: Limiter, payer: str) -> Quota:
        strategy = limiter.strategy
        if not await strategy.hit(self.per_payer, "paid", payer):
            retry = await limiter.retry_after(self.per_payer, "paid", payer)
            raise self._refused(retry, Quota(self.per_payer.amount, 0))
        # Two round trips at once: the global count and what is left of the payer's window.
        allowed, stats = await asyncio.gather(
            strategy.hit(self.global_limit, "paid", "global"),
            strategy.get_window_stats(self.per_payer, "paid", payer),
        )
        quota = Quota(self.per_payer.amount, stats.remaining)
        if not allowed:
            retry = await limiter.retry_after(self.global_limit, "paid", "global")
            raise self._refused(retry, quota)
        return quota

    @staticmethod
    def _refused(retry_after: int, quota: Quota) -> RateLimited:
        error = RateLimited(retry_after)
        error.headers = {**(error.headers or {}), **quota.headers()}
        return error
