"""The paid-route limits alone: per payer, global, and failing open when their storage fails."""

from __future__ import annotations

from typing import Any

import pytest
from limits.aio.storage import MemoryStorage

from sellerdesk.errors import RateLimited
from sellerdesk.kit.ratelimit import Limiter, PaidCallLimits


class BrokenStorage(MemoryStorage):
    """A store that is down: every operation fails."""

    async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("store down")

    async def get_moving_window(self, *args: Any, **kwargs: Any) -> tuple[float, int]:
        raise ConnectionError("store down")


async def test_per_payer_limit_refuses_with_whole_seconds_retry_after() -> None:
    limits = PaidCallLimits(Limiter(MemoryStorage()), "2/minute", "100/minute")
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


async def test_global_limit_counts_every_payer() -> None:
    limits = PaidCallLimits(Limiter(MemoryStorage()), "10/minute", "3/minute")
    for payer in ("user:1", "user:2", "key:3"):
        await limits.hit(payer)
    with pytest.raises(RateLimited):
        await limits.hit("user:4")


async def test_storage_down_fails_open_to_a_per_process_cap() -> None:
    limits = PaidCallLimits(Limiter(BrokenStorage()), "2/minute", "100/minute")
    await limits.hit("user:1")
    await limits.hit("user:1")
    with pytest.raises(RateLimited):
        await limits.hit("user:1")
