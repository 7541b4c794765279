"""Rate limiting on the `limits` library: Redis storage when configured, memory otherwise."""

from __future__ import annotations

import math
import time

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


class LoginThrottle:
    """Refuses logins after too many failures per email or IP; fails closed if storage is down."""

    def __init__(self, limiter: Limiter, limit: str) -> None:
        self.limiter = limiter
        self.item = parse(limit)

    async def check(self, email: str, ip: str) -> None:
        """Raise 429 when the email or the IP is over the failure limit."""
        try:
            for key in (f"email:{email}", f"ip:{ip}"):
                if not await self.limiter.strategy.test(self.item, "login-failures", key):
                    retry = await self.limiter.retry_after(self.item, "login-failures", key)
                    raise RateLimited(retry, "Too many failed logins; retry later.")
        except RateLimited:
            raise
        except Exception as exc:
            log.error("login_throttle_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Login is temporarily unavailable; retry later.") from exc

    async def record_failure(self, email: str, ip: str) -> None:
        try:
            for key in (f"email:{email}", f"ip:{ip}"):
                await self.limiter.strategy.hit(self.item, "login-failures", key)
        except Exception as exc:
            log.error("login_throttle_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Login is temporarily unavailable; retry later.") from exc
