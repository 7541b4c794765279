"""The paid-route limits alone: per payer, global, and failing open when their storage fails."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage, Storage

from sellerdesk.errors import RateLimited
from sellerdesk.kit import ratelimit
from sellerdesk.kit.ratelimit import Limiter, PaidCallLimits, create_storage
from tests.conftest import REDIS_URL
from tests.private_redis import PrivateRedis


class BrokenStorage(MemoryStorage):
    """A store that is down: every operation fails."""

    async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("store down")

    async def get_moving_window(self, *args: Any, **kwargs: Any) -> tuple[float, int]:
        raise ConnectionError("store down")


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest, redis: Any, redis_prefix: str) -> Storage:
    """Both stores: this process's memory, and Redis (one Lua script per call)."""
    if request.param == "memory":
        return MemoryStorage()
    if redis is None:
        pytest.skip("Redis runs with TEST_BACKEND=postgres")
    return create_storage(REDIS_URL, key_prefix=redis_prefix)


async def test_per_payer_limit_refuses_with_whole_seconds_retry_after(storage: Storage) -> None:
    limits = PaidCallLimits(Limiter(storage), "2/minute", "100/minute")
    assert (await limits.hit("user:1")).headers() == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
    }
    assert (await limits.hit("user:1")).remaining == 0
    with pytest.raises(RateLimited) as refused:
        await limits.hit("user:1")
    headers = refused.value.headers or {}
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Remaining"] == "0"
    assert (await limits.hit("user:2")).remaining == 1


async def test_global_limit_counts_every_payer(storage: Storage) -> None:
    limits = PaidCallLimits(Limiter(storage), "10/minute", "3/minute")
    for payer in ("user:1", "user:2", "key:3"):
        await limits.hit(payer)
    with pytest.raises(RateLimited) as refused:
        await limits.hit("user:4")
    headers = refused.value.headers or {}
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Remaining"] == "9"  # the payer's own call was counted
    # A payer refused by its own limit is not counted in the global window.
    limits = PaidCallLimits(Limiter(storage), "1/minute", "1000/minute")
    await limits.hit("user:9")
    for _ in range(3):
        with pytest.raises(RateLimited):
            await limits.hit("user:9")
    key = limits.global_limit.key_for("paid", "global")
    assert (await storage.get_moving_window(key, 1000, 60))[1] == 1


async def test_storage_down_fails_open_to_a_per_process_cap() -> None:
    limits = PaidCallLimits(Limiter(BrokenStorage()), "2/minute", "100/minute")
    await limits.hit("user:1")
    await limits.hit("user:1")
    with pytest.raises(RateLimited):
        await limits.hit("user:1")


async def test_after_a_redis_restart_calls_count_in_redis_again_at_once(
    private_redis: PrivateRedis,
) -> None:
    storage = create_storage(private_redis.url, key_prefix="paid-test")
    limits = PaidCallLimits(Limiter(storage), "100/minute", "1000/minute")
    await asyncio.gather(*(limits.hit("user:1") for _ in range(8)))  # several pooled connections
    private_redis.restart()  # same port, empty: every pooled connection is dead
    quotas = await asyncio.gather(*(limits.hit("user:1") for _ in range(8)))
    # Counted in the restarted Redis, not in the fallback memory (which would have carried on
    # from the 8 calls before the restart).
    assert min(q.remaining for q in quotas) == 92
    key = limits.per_payer.key_for("paid", "user:1")
    _, in_redis = await storage.get_moving_window(key, 100, 60)
    assert in_redis == 8


class Logged:
    """Stands in for the module's logger: the events logged at error level."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, event: str, **fields: Any) -> None:
        self.errors.append(event)


async def test_a_storage_outage_is_logged_once_every_ten_seconds_not_on_every_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    logged = Logged()
    monkeypatch.setattr(ratelimit, "log", logged)
    limits = PaidCallLimits(Limiter(BrokenStorage()), "100/minute", "1000/minute")

    for _ in range(3):
        await limits.hit("user:1")
    clock[0] += PaidCallLimits.LOG_EVERY_SECONDS
    await limits.hit("user:1")  # ten seconds on: not yet
    assert logged.errors == ["paid_rate_limit_storage_unavailable"]
    clock[0] += 0.5
    await limits.hit("user:1")

    assert logged.errors == ["paid_rate_limit_storage_unavailable"] * 2
