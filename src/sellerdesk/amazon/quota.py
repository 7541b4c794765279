"""Pacing of SP-API calls to Amazon's quotas: one token bucket per (seller, operation).

Amazon meters each operation per seller and application with a token bucket: `rate` requests a
second, up to `burst` at once (Catalog Items and FBA Inventory: 2/s, burst 2); beyond it, 429.
The pacer keeps us inside it: every call reserves the next free slot of its bucket and sleeps
until that slot is due. A call whose slot is further away than its wait budget reserves nothing
and fails at once with `QuotaExhausted` (503 + Retry-After), so a burst never turns into a silent
multi-second stall.

The bucket is the GCRA form of a token bucket (one "theoretical arrival time" per bucket). With
`REDIS_URL` set it lives in Redis and is updated by one Lua script (its clock is Redis's `TIME`),
so every process of every host shares it; otherwise it lives in this process. If Redis fails the
pacer falls back to this process's bucket (Amazon still enforces its quota with 429).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol

import structlog
from redis.asyncio import Redis

from sellerdesk.amazon.errors import QuotaExhausted

log = structlog.get_logger(__name__)

# KEYS[1]: the bucket. ARGV: interval between calls (s), burst, longest acceptable wait (s).
# Returns {granted (1/0), wait in seconds as a string}: Lua numbers would be truncated to integers.
_RESERVE = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
if wait < 0 then wait = 0 end
if wait > max_wait then
  return {0, string.format('%.6f', wait)}
end
local next_tat = tat + interval
local ttl = math.ceil((next_tat - now + burst * interval) * 1000)
redis.call('SET', KEYS[1], string.format('%.6f', next_tat), 'PX', ttl)
return {1, string.format('%.6f', wait)}
"""


class Buckets(Protocol):
    async def reserve(
        self, key: str, interval: float, burst: int, max_wait: float
    ) -> tuple[bool, float]:
        """Reserve the next slot unless it is more than `max_wait` away: (granted, wait)."""
        ...


class MemoryBuckets:
    """This process's buckets (no await between reading and writing: atomic under asyncio)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    async def reserve(
        self, key: str, interval: float, burst: int, max_wait: float
    ) -> tuple[bool, float]:
        now = time.monotonic()
        tat = max(self._tat.get(key, now), now)
        wait = max(0.0, tat - (burst - 1) * interval - now)
        if wait > max_wait:
            return False, wait
        self._tat[key] = tat + interval
        return True, wait


class RedisBuckets:
    """Buckets shared by every process using this Redis and key prefix."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.prefix = prefix
        self._script = redis.register_script(_RESERVE)

    async def reserve(
        self, key: str, interval: float, burst: int, max_wait: float
    ) -> tuple[bool, float]:
        granted, wait = await self._script(
            keys=[f"{self.prefix}:{key}"], args=[repr(interval), burst, repr(max_wait)]
        )
        return int(granted) == 1, float(wait)


class Pacer:
    """Holds each (seller, operation) to Amazon's rate; one per process."""

    def __init__(self, default_rate: float, burst: int, redis: Redis | None, prefix: str) -> None:
        self.default_rate = default_rate
        self.burst = burst
        self._rates: dict[str, float] = {}
        self._local = MemoryBuckets()
        self._shared: Buckets | None = RedisBuckets(redis, prefix) if redis is not None else None

    def rate(self, operation: str) -> float:
        """Requests per second allowed for an operation: Amazon's last word, else the default."""
        return self._rates.get(operation, self.default_rate)

    def learn(self, operation: str, header: str | None) -> None:
        """Take the rate from an `x-amzn-RateLimit-Limit` header (absent on 429s: kept)."""
        try:
            rate = float(header) if header else 0.0
        except ValueError:
            return
        if rate > 0 and math.isfinite(rate):
            self._rates[operation] = rate

    async def wait(self, seller: str, operation: str, budget: float) -> None:
        """Take one call of quota, sleeping until it is due; `QuotaExhausted` past the budget."""
        key = f"{seller}:{operation}"
        interval = 1.0 / self.rate(operation)
        budget = max(0.0, budget)
        granted, wait = await self._reserve(key, interval, budget)
        if not granted:
            log.warning("spapi_quota_exhausted", operation=operation, wait=round(wait, 3))
            raise QuotaExhausted(retry_after=wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def _reserve(self, key: str, interval: float, budget: float) -> tuple[bool, float]:
        if self._shared is not None:
            try:
                return await self._shared.reserve(key, interval, self.burst, budget)
            except Exception as exc:
                log.warning("spapi_quota_store_unavailable", error=type(exc).__name__)
        return await self._local.reserve(key, interval, self.burst, budget)
