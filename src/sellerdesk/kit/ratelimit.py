"""Rate limits: the paid routes' limits (on `limits`) and the failed-login throttle.

Both keep their counts in Redis when configured, in this process's memory otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

import anyio
import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from sellerdesk.errors import RateLimited, ServiceUnavailable
from sellerdesk.kit.redis_client import redis_options

log = structlog.get_logger(__name__)


def create_storage(redis_url: str | None, key_prefix: str = "sellerdesk") -> Storage:
    """Redis (shared by every process) when a URL is given, else this process's memory."""
    if redis_url:
        uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        return RedisStorage(
            uri,
            implementation="redispy",
            key_prefix=key_prefix,
            wrap_exceptions=True,
            **redis_options(),
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


class FailureLimit:
    """One failed-login limit: `amount` failures within a moving window of `window_ms`."""

    __slots__ = ("amount", "window_ms")

    def __init__(self, text: str) -> None:
        item = parse(text)
        self.amount = item.amount
        self.window_ms = item.get_expiry() * 1000


class LoginFailureStore(Protocol):
    """Where failed logins are counted: a moving window of attempt ids per key."""

    async def reserve(
        self, keys: tuple[str, str, str], limits: tuple[FailureLimit, ...], attempt: str
    ) -> tuple[int, float]:
        """Admit one attempt or say which key refuses it, atomically.

        `keys` are (address, account at address, account). Refused when the address or the
        account at this address is at its limit, or when the account is at its limit *and*
        this address has failed for it before. Admitted: the attempt is counted under all three
        keys at once and (0, 0) is returned; refused: (1-based index of the key, seconds until
        it admits again), nothing counted.
        """
        ...

    async def forget(self, keys: tuple[str, ...], attempt: str) -> None:
        """Un-count one attempt (it was not a wrong password)."""
        ...

    async def clear(self, key: str) -> None:
        """Forget every failure counted under a key."""
        ...


class RedisLoginFailures:
    """Failures in Redis sorted sets (score = server time in ms), checked and counted in Lua."""

    _RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts = {}
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - tonumber(ARGV[2 * i + 1]))
  counts[i] = redis.call('ZCARD', KEYS[i])
end
local function refuse(i)
  local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local nth = counts[i] - limit
  local oldest = redis.call('ZRANGE', KEYS[i], nth, nth, 'WITHSCORES')
  return {i, tonumber(oldest[2]) + window - now}
end
if counts[1] >= tonumber(ARGV[2]) then return refuse(1) end
if counts[2] >= tonumber(ARGV[4]) then return refuse(2) end
if counts[2] > 0 and counts[3] >= tonumber(ARGV[6]) then return refuse(3) end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * i + 1])
end
return {0, 0}
"""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._reserve = redis.register_script(self._RESERVE)

    async def reserve(
        self, keys: tuple[str, str, str], limits: tuple[FailureLimit, ...], attempt: str
    ) -> tuple[int, float]:
        args: list[str | int] = [attempt]
        for limit in limits:
            args += [limit.amount, limit.window_ms]
        index, wait_ms = await self._reserve(keys=[self._key(k) for k in keys], args=args)
        return int(index), int(wait_ms) / 1000

    async def forget(self, keys: tuple[str, ...], attempt: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(self._key(key), attempt)
            await pipe.execute()

    async def clear(self, key: str) -> None:
        await self.redis.delete(self._key(key))

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"


class MemoryLoginFailures:
    """The same rules in this process's memory (no Redis: one process, e.g. development)."""

    SWEEP_EVERY = 1000

    def __init__(self) -> None:
        # key -> (window in ms, [(time in ms, attempt id), ...] oldest first)
        self._entries: dict[str, tuple[int, list[tuple[float, str]]]] = {}
        self._reserved = 0

    async def reserve(
        self, keys: tuple[str, str, str], limits: tuple[FailureLimit, ...], attempt: str
    ) -> tuple[int, float]:
        # No await in here: the check and the count are one step for the event loop.
        now = time.monotonic() * 1000
        self._reserved += 1
        if self._reserved % self.SWEEP_EVERY == 0:
            self._sweep(now)
        pairs = list(zip(keys, limits, strict=True))
        live = [self._live(key, limit.window_ms, now) for key, limit in pairs]
        for index, (entries, limit) in enumerate(zip(live, limits, strict=True), start=1):
            if index == 3 and not live[1]:
                continue  # the account's ceiling binds only addresses that failed for it
            if len(entries) >= limit.amount:
                oldest = entries[len(entries) - limit.amount][0]
                return index, (oldest + limit.window_ms - now) / 1000
        for (key, limit), entries in zip(pairs, live, strict=True):
            entries.append((now, attempt))
            self._entries[key] = (limit.window_ms, entries)
        return 0, 0.0

    async def forget(self, keys: tuple[str, ...], attempt: str) -> None:
        for key in keys:
            window, entries = self._entries.get(key, (0, []))
            kept = [entry for entry in entries if entry[1] != attempt]
            if kept:
                self._entries[key] = (window, kept)
            else:
                self._entries.pop(key, None)

    async def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    def _live(self, key: str, window_ms: int, now: float) -> list[tuple[float, str]]:
        _, entries = self._entries.get(key, (window_ms, []))
        return [entry for entry in entries if entry[0] > now - window_ms]

    def _sweep(self, now: float) -> None:
        for key, (window, entries) in list(self._entries.items()):
            if not entries or entries[-1][0] <= now - window:
                del self._entries[key]


class LoginAttempt:
    """The verdict of one admitted login attempt, given by the code that checked the password."""

    __slots__ = ("verdict",)

    def __init__(self) -> None:
        self.verdict: Literal["failed", "succeeded"] | None = None

    def failed(self) -> None:
        """The password was wrong (or the email unknown): the attempt stays counted."""
        self.verdict = "failed"

    def succeeded(self) -> None:
        """The password was right: the attempt and this address's failures for it are forgotten."""
        self.verdict = "succeeded"


class LoginThrottle:
    """Refuses logins after too many wrong passwords; fails closed when its store is down.

    Failures are counted per (account, client address), per client address, and per account.
    The per-account ceiling (against guessing from many addresses) refuses only addresses that
    have already failed for that account, so failures elsewhere never lock the owner out of an
    address that has not failed.

    Only a wrong password counts. Each attempt is counted *before* the password is checked, in
    one atomic step with the check of the limits, so concurrent guesses cannot overshoot; once
    the outcome is known the count is kept (wrong password), or taken back (right password, or
    no verdict at all: a database error, a crash, a cancelled request).
    """

    STORE_DOWN_RETRY_AFTER = 5
    _REASONS = ("", "address", "account_address", "account")

    def __init__(
        self,
        store: LoginFailureStore,
        *,
        per_account_address: str,
        per_address: str,
        per_account: str,
    ) -> None:
        self.store = store
        self.limits = (
            FailureLimit(per_address),
            FailureLimit(per_account_address),
            FailureLimit(per_account),
        )

    @asynccontextmanager
    async def attempt(self, email: str, ip: str) -> AsyncIterator[LoginAttempt]:
        """Admit one attempt (429 when over a limit, 503 when the store is down) and settle it."""
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        keys = (f"login:addr:{ip}", f"login:pair:{account}:{ip}", f"login:acct:{account}")
        attempt_id = uuid.uuid4().hex
        try:
            refused, wait = await self.store.reserve(keys, self.limits, attempt_id)
        except Exception as exc:
            log.error("login_throttle_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable(
                "Login is temporarily unavailable; retry later.",
                headers={"Retry-After": str(self.STORE_DOWN_RETRY_AFTER)},
            ) from exc
        if refused:
            log.info("login_refused", reason=self._REASONS[refused], ip=ip)
            raise RateLimited(math.ceil(wait), "Too many failed logins; retry later.")
        outcome = LoginAttempt()
        try:
            yield outcome
        finally:
            # Settle even when the request is being cancelled.
            with anyio.CancelScope(shield=True):
                await self._settle(keys, attempt_id, outcome.verdict)

    async def _settle(
        self, keys: tuple[str, str, str], attempt_id: str, verdict: str | None
    ) -> None:
        address, pair, account = keys
        try:
            if verdict == "succeeded":
                await self.store.forget((address, account), attempt_id)
                await self.store.clear(pair)
            elif verdict is None:
                await self.store.forget(keys, attempt_id)
        except Exception as exc:
            # The reservation expires with its window; nothing else to do.
            log.error("login_throttle_settle_failed", verdict=verdict, error=type(exc).__name__)


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

    # Both windows in one round trip, in the lists `limits` keeps for a moving window (newest
    # first, one timestamp per call): the payer's window is checked and counted, then the
    # global one, then what is left of the payer's window is read. Returns {refused by (0 none,
    # 1 payer, 2 global), calls in the payer's window, oldest entry of the refusing window}.
    _HIT_SCRIPT = """
local now = tonumber(ARGV[1])
local function full(key, limit, expiry)
  local entry = redis.call('LINDEX', key, limit - 1)
  return entry and tonumber(entry) >= now - expiry
end
local function window(key, limit, expiry)
  local low, high, found = 0, limit - 1, nil
  while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('LINDEX', key, mid))
    if value and value >= now - expiry then
      found = mid
      low = mid + 1
    else
      high = mid - 1
    end
  end
  if found == nil then
    return 0, tostring(now)
  end
  return found + 1, redis.call('LINDEX', key, found)
end
local function push(key, limit, expiry)
  redis.call('LPUSH', key, ARGV[1])
  redis.call('LTRIM', key, 0, limit - 1)
  redis.call('EXPIRE', key, expiry)
end
local limit, expiry = tonumber(ARGV[2]), tonumber(ARGV[3])
local global_limit, global_expiry = tonumber(ARGV[4]), tonumber(ARGV[5])
if full(KEYS[1], limit, expiry) then
  local count, oldest = window(KEYS[1], limit, expiry)
  return {1, count, oldest}
end
push(KEYS[1], limit, expiry)
local count = window(KEYS[1], limit, expiry)
if full(KEYS[2], global_limit, global_expiry) then
  local _, oldest = window(KEYS[2], global_limit, global_expiry)
  return {2, count, oldest}
end
push(KEYS[2], global_limit, global_expiry)
return {0, count, '0'}
"""

    def __init__(self, limiter: Limiter, per_payer: str, global_limit: str) -> None:
        self.limiter = limiter
        self.per_payer = parse(per_payer)
        self.global_limit = parse(global_limit)
        self.fallback = Limiter(MemoryStorage())
        self._logged_at = float("-inf")
        self._script: Any = None
        if isinstance(limiter.storage, RedisStorage):
            bridge: Any = limiter.storage.bridge  # redis-py's: its connection and key prefix
            self._script = bridge.get_connection().register_script(self._HIT_SCRIPT)

    async def hit(self, payer: str) -> Quota:
        """Count one call of `payer`; 429 with `Retry-After` when over either limit."""
        try:
            if self._script is not None:
                return await self._hit_redis(payer)
            return await self._hit(self.limiter, payer)
        except RateLimited:
            raise
        except Exception as exc:
            if time.monotonic() - self._logged_at > self.LOG_EVERY_SECONDS:
                self._logged_at = time.monotonic()
                log.error("paid_rate_limit_storage_unavailable", error=type(exc).__name__)
            return await self._hit(self.fallback, payer)

    async def _hit_redis(self, payer: str) -> Quota:
        """`_hit` in one Lua script: the same lists, counts and refusals, one round trip."""
        bridge = self.limiter.storage.bridge  # type: ignore[attr-defined]
        mine, every = self.per_payer, self.global_limit
        keys = [
            bridge.prefixed_key(mine.key_for("paid", payer)),
            bridge.prefixed_key(every.key_for("paid", "global")),
        ]
        now = time.time()
        args = [now, mine.amount, mine.get_expiry(), every.amount, every.get_expiry()]
        refused, count, oldest = await self._script(keys=keys, args=args)
        quota = Quota(mine.amount, mine.amount - int(count))
        if int(refused) == 0:
            return quota
        expiry = mine.get_expiry() if int(refused) == 1 else every.get_expiry()
        retry = max(1, math.ceil(float(oldest) + expiry - now))
        raise self._refused(retry, Quota(mine.amount, 0) if int(refused) == 1 else quota)

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
