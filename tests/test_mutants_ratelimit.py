"""The failed-login stores and the login throttle, step by step, on a clock the test moves.

`tests/test_login_throttle.py` holds the rules through the HTTP API; this file holds what those
tests cannot see from outside: which key refuses and for exactly how long, the instant a
failure stops counting, what a settled attempt leaves behind, and that the in-memory store
sweeps keys whose failures have all expired (it only sweeps every `SWEEP_EVERY` attempts).
The Redis store runs the same rules in Lua on a private redis-server (on both backends).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage, RedisStorage
from redis.asyncio import Redis

from sellerdesk.errors import RateLimited, ServiceUnavailable
from sellerdesk.kit import ratelimit
from sellerdesk.kit.ratelimit import (
    FailureLimit,
    Limiter,
    LoginFailureStore,
    LoginThrottle,
    MemoryLoginFailures,
    PaidCallLimits,
    RedisLoginFailures,
    create_storage,
)
from tests.private_redis import PrivateRedis, started_redis

MINUTE_MS = 60_000


class Clock:
    """Stands in for the `time` module inside `sellerdesk.kit.ratelimit` (seconds)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))  # whole seconds: exact sums; real: `limits` reads it

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


def keys(address: str, account: str) -> tuple[str, str, str]:
    """The three keys of one attempt, as `LoginThrottle` builds them."""
    return (f"addr:{address}", f"pair:{account}:{address}", f"acct:{account}")


def limits(address: int, pair: int, account: int) -> tuple[FailureLimit, ...]:
    return tuple(FailureLimit(f"{n}/minute") for n in (address, pair, account))


# --------------------------------------------------------------------------- memory store


async def test_a_refusal_names_the_full_key_and_the_exact_wait(clock: Clock) -> None:
    store = MemoryLoginFailures()
    rules = limits(address=2, pair=5, account=5)
    assert await store.reserve(keys("a", "x"), rules, "1") == (0, 0.0)
    clock.now += 10
    assert await store.reserve(keys("a", "y"), rules, "2") == (0, 0.0)
    clock.now += 10
    # The address has failed twice: refused until its oldest failure is a minute old.
    assert await store.reserve(keys("a", "z"), rules, "3") == (1, 40.0)
    assert FailureLimit("2/minute").window_ms == MINUTE_MS
    # Nothing was counted for the refused attempt.
    clock.now += 40
    assert await store.reserve(keys("a", "z"), rules, "4") == (0, 0.0)


async def test_the_pair_refuses_before_the_account(clock: Clock) -> None:
    store = MemoryLoginFailures()
    rules = limits(address=10, pair=2, account=2)
    for attempt in ("1", "2"):
        assert await store.reserve(keys("a", "x"), rules, attempt) == (0, 0.0)
        clock.now += 5
    assert await store.reserve(keys("a", "x"), rules, "3") == (2, 50.0)


async def test_the_account_ceiling_waits_for_the_failure_that_brings_it_under(
    clock: Clock,
) -> None:
    store = MemoryLoginFailures()
    rules = limits(address=10, pair=10, account=2)
    # Five addresses fail once each for one account, ten seconds apart: the account holds
    # five failures, more than its ceiling of two (an address that had not failed was let in).
    for n in range(5):
        assert await store.reserve(keys(f"a{n}", "x"), rules, f"{n}") == (0, 0.0)
        clock.now += 10
    # Now 50 s after the first. The first address has failed for it: refused until only one
    # failure is left in the window, i.e. until the fourth (at 30 s) expires: 40 s from now.
    assert await store.reserve(keys("a0", "x"), rules, "again") == (3, 40.0)
    # An address that never failed for the account is let in, and counted.
    assert await store.reserve(keys("fresh", "x"), rules, "fresh") == (0, 0.0)
    # It failed for the account now: refused until the fifth failure (at 40 s) expires.
    assert await store.reserve(keys("fresh", "x"), rules, "fresh-2") == (3, 50.0)


async def test_a_full_address_is_refused_even_for_an_account_it_never_tried(
    clock: Clock,
) -> None:
    store = MemoryLoginFailures()
    rules = limits(address=1, pair=5, account=5)
    assert await store.reserve(keys("a", "x"), rules, "1") == (0, 0.0)
    assert await store.reserve(keys("a", "new"), rules, "2") == (1, 60.0)


async def test_a_failure_stops_counting_exactly_one_window_later(clock: Clock) -> None:
    store = MemoryLoginFailures()
    rules = limits(address=1, pair=1, account=1)
    assert await store.reserve(keys("a", "x"), rules, "1") == (0, 0.0)
    start = clock.now
    clock.now = start + 59.999
    assert (await store.reserve(keys("a", "x"), rules, "2"))[0] == 1
    clock.now = start + 60  # exactly one minute after the failure
    assert await store.reserve(keys("a", "x"), rules, "3") == (0, 0.0)


async def test_forgetting_one_attempt_keeps_the_others(clock: Clock) -> None:
    store = MemoryLoginFailures()
    rules = limits(address=2, pair=2, account=2)
    assert await store.reserve(keys("a", "x"), rules, "1") == (0, 0.0)
    assert await store.reserve(keys("a", "x"), rules, "2") == (0, 0.0)
    await store.forget(keys("a", "x"), "2")
    assert await store.reserve(keys("a", "x"), rules, "3") == (0, 0.0)
    assert (await store.reserve(keys("a", "x"), rules, "4"))[0] == 1
    # Forgetting under keys the store no longer holds (cleared meanwhile) forgets the rest.
    await store.clear("pair:x:a")
    await store.clear("never-seen")
    await store.forget(("never-seen", "pair:x:a", "addr:a", "acct:x"), "3")
    assert await store.reserve(keys("a", "x"), rules, "5") == (0, 0.0)
    # The only attempt left under a key forgotten: the key goes.
    await store.forget(keys("a", "x"), "1")
    await store.forget(keys("a", "x"), "5")
    assert store._entries == {}


async def test_the_memory_store_sweeps_keys_whose_failures_all_expired(clock: Clock) -> None:
    store = MemoryLoginFailures()
    store.SWEEP_EVERY = 8  # the 8th reservation sweeps, before counting itself
    rules = limits(address=100, pair=100, account=100)
    start = clock.now

    async def reserve_at(seconds: float, group: str) -> None:
        clock.now = start + seconds
        assert await store.reserve(keys(group, group), rules, f"{group}@{seconds}") == (0, 0.0)

    await reserve_at(0, "expired")
    await reserve_at(20, "mixed")  # expired by the sweep...
    await reserve_at(21, "mixed")
    await reserve_at(61, "filler")  # "expired" has expired, but this is no sweep yet
    await reserve_at(62, "boundary")  # exactly one window before the sweep: expired
    await reserve_at(70, "live")
    await reserve_at(75, "mixed")  # ...but its newest failure is live
    assert len(store._entries) == 15  # no sweep yet
    await reserve_at(122, "new")
    assert set(store._entries) == {
        *keys("mixed", "mixed"),
        *keys("live", "live"),
        *keys("new", "new"),
    }
    # A swept key is not dropped from what still counts.
    assert [t for t, _ in store._entries["addr:mixed"][1]] == [
        (start + s) * 1000 for s in (20, 21, 75)
    ]


# --------------------------------------------------------------------------- both stores


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    with started_redis() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_server: PrivateRedis
) -> AsyncIterator[LoginFailureStore]:
    if request.param == "memory":
        yield MemoryLoginFailures()
        return
    client: Redis = Redis.from_url(redis_server.url)
    await client.flushdb()
    try:
        yield RedisLoginFailures(client, "t")
    finally:
        await client.aclose()


async def test_both_stores_refuse_at_the_limit_and_say_how_long(store: LoginFailureStore) -> None:
    rules = (FailureLimit("2/hour"), FailureLimit("5/minute"), FailureLimit("5/minute"))
    assert await store.reserve(keys("a", "x"), rules, "1") == (0, 0)
    assert await store.reserve(keys("a", "y"), rules, "2") == (0, 0)
    index, wait = await store.reserve(keys("a", "z"), rules, "3")
    assert index == 1 and 3599 < wait <= 3600, wait  # in seconds, to the millisecond


async def test_both_stores_forget_only_the_attempt_named(store: LoginFailureStore) -> None:
    rules = limits(address=2, pair=2, account=2)
    for attempt in ("1", "2"):
        assert await store.reserve(keys("a", "x"), rules, attempt) == (0, 0)
    await store.forget(keys("a", "x"), "2")
    assert await store.reserve(keys("a", "x"), rules, "3") == (0, 0)
    assert (await store.reserve(keys("a", "x"), rules, "4"))[0] == 1
    await store.forget(keys("a", "x"), "1")
    await store.forget(keys("a", "x"), "3")
    for attempt in ("5", "6"):
        assert await store.reserve(keys("a", "x"), rules, attempt) == (0, 0)


async def test_both_stores_clear_one_key_only(store: LoginFailureStore) -> None:
    rules = limits(address=3, pair=1, account=3)
    assert await store.reserve(keys("a", "x"), rules, "1") == (0, 0)
    await store.clear("pair:x:a")
    await store.clear("pair:nobody:a")
    assert await store.reserve(keys("a", "x"), rules, "2") == (0, 0)
    assert (await store.reserve(keys("a", "y"), rules, "3")) == (0, 0)
    assert (await store.reserve(keys("a", "z"), rules, "4"))[0] == 1  # the address kept all


async def test_the_redis_store_keeps_its_keys_under_its_prefix(redis_server: PrivateRedis) -> None:
    client: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushdb()
    store = RedisLoginFailures(client, "deploy-a")
    assert await store.reserve(keys("a", "x"), limits(1, 1, 1), "1") == (0, 0)
    stored = {str(key) for key in await client.keys("*")}  # decoded: str already
    await client.aclose()
    assert stored == {"deploy-a:addr:a", "deploy-a:pair:x:a", "deploy-a:acct:x"}


# --------------------------------------------------------------------------- the throttle


def throttle(
    store: LoginFailureStore,
    pair: str = "3/minute",
    address: str = "4/minute",
    account: str = "5/minute",
) -> LoginThrottle:
    return LoginThrottle(store, per_account_address=pair, per_address=address, per_account=account)


async def _try(t: LoginThrottle, email: str, ip: str, verdict: str | None) -> None:
    async with t.attempt(email, ip) as attempt:
        if verdict == "failed":
            attempt.failed()
        elif verdict == "succeeded":
            attempt.succeeded()


async def test_failures_count_and_a_success_forgets_its_own_pair_only(
    store: LoginFailureStore,
) -> None:
    t = throttle(store, address="6/minute", account="10/minute")
    for _ in range(2):
        await _try(t, "owner@example.com", "10.0.0.1", "failed")
    await _try(t, "other@example.com", "10.0.0.1", "failed")
    # A success: this address's failures for this account go, its attempt is not counted,
    # but the address keeps its failure for the other account.
    await _try(t, "owner@example.com", "10.0.0.1", "succeeded")
    for _ in range(3):
        await _try(t, "owner@example.com", "10.0.0.1", "failed")
    # The address now holds 6 failures (2 + 3 for `owner`, 1 for `other`): full.
    with pytest.raises(RateLimited) as refused:
        await _try(t, "third@example.com", "10.0.0.1", "failed")
    assert refused.value.headers is not None
    assert 59 <= int(refused.value.headers["Retry-After"]) <= 60
    assert refused.value.message == "Too many failed logins; retry later."


async def test_an_attempt_without_a_verdict_leaves_nothing_counted(
    store: LoginFailureStore,
) -> None:
    t = throttle(store, pair="2/minute")
    for _ in range(5):
        await _try(t, "owner@example.com", "10.0.0.1", None)
    with pytest.raises(RuntimeError):
        async with t.attempt("owner@example.com", "10.0.0.1"):
            raise RuntimeError("the database went away")
    for _ in range(2):
        await _try(t, "owner@example.com", "10.0.0.1", "failed")
    with pytest.raises(RateLimited):
        await _try(t, "owner@example.com", "10.0.0.1", "failed")


async def test_a_successful_login_is_never_counted(store: LoginFailureStore) -> None:
    t = throttle(store, pair="2/minute")
    await _try(t, "owner@example.com", "10.0.0.1", "failed")
    for _ in range(6):  # more than any limit
        await _try(t, "owner@example.com", "10.0.0.1", "succeeded")
    # The account counted none of them: another address fails up to the account's ceiling.
    await _try(t, "owner@example.com", "10.0.0.2", "failed")
    await _try(t, "owner@example.com", "10.0.0.2", "failed")


class BrokenStore(MemoryLoginFailures):
    def __init__(self, *, reserve: bool = False, settle: bool = False) -> None:
        super().__init__()
        self.broken_reserve, self.broken_settle = reserve, settle

    async def reserve(self, *args: Any, **kwargs: Any) -> tuple[int, float]:
        if self.broken_reserve:
            raise ConnectionError("store down")
        return await super().reserve(*args, **kwargs)

    async def forget(self, keys: tuple[str, ...], attempt: str) -> None:
        if self.broken_settle:
            raise ConnectionError("store down")
        await super().forget(keys, attempt)


async def test_the_throttle_fails_closed_while_its_store_is_down() -> None:
    t = throttle(BrokenStore(reserve=True))
    with pytest.raises(ServiceUnavailable) as down:
        await _try(t, "owner@example.com", "10.0.0.1", "succeeded")
    assert down.value.headers == {"Retry-After": "5"}


async def test_a_store_failing_while_settling_does_not_fail_the_login() -> None:
    t = throttle(BrokenStore(settle=True))
    await _try(t, "owner@example.com", "10.0.0.1", "succeeded")
    await _try(t, "owner@example.com", "10.0.0.1", None)


# --------------------------------------------------------------------------- paid-call limits


@pytest.fixture
async def redis_limits(redis_server: PrivateRedis) -> AsyncIterator[RedisStorage]:
    """Redis storage of the paid limits (one Lua script per call, timed by `ratelimit.time`)."""
    client: Redis = Redis.from_url(redis_server.url)
    await client.flushdb()
    await client.aclose()
    storage = create_storage(redis_server.url, key_prefix="paid")
    assert isinstance(storage, RedisStorage)
    yield storage


def _refusal(error: pytest.ExceptionInfo[RateLimited]) -> dict[str, str]:
    return error.value.headers or {}


async def test_redis_paid_limits_wait_for_the_window_that_refused(
    clock: Clock, redis_limits: RedisStorage
) -> None:
    limits = PaidCallLimits(Limiter(redis_limits), "2/hour", "5/minute")
    start = clock.now
    assert (await limits.hit("user:1")).headers() == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
    }
    clock.now = start + 10
    assert (await limits.hit("user:1")).remaining == 0
    # The payer's own window (an hour) is full: back when its first call is an hour old.
    clock.now = start + 20
    with pytest.raises(RateLimited) as mine:
        await limits.hit("user:1")
    assert _refusal(mine) == {
        "Retry-After": "3580",
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
    }
    # Three other payers fill the global window (a minute; the refused call did not count).
    for n, seconds in ((2, 30), (3, 40), (4, 50)):
        clock.now = start + seconds
        assert (await limits.hit(f"user:{n}")).remaining == 1
    # Refused by the global window half a second before its oldest call leaves it: retry in
    # 1 s (whole seconds, rounded up); the payer's own call was counted.
    clock.now = start + 59.5
    with pytest.raises(RateLimited) as every:
        await limits.hit("user:5")
    assert _refusal(every) == {
        "Retry-After": "1",
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
    }
    clock.now = start + 60.5
    assert (await limits.hit("user:6")).remaining == 1
    # The windows are the ones the `limits` library keeps and reads (its keys and lists).
    every_key = limits.global_limit.key_for("paid", "global")
    assert (await redis_limits.get_moving_window(every_key, 5, 60))[1] == 5
    mine_key = limits.per_payer.key_for("paid", "user:1")
    assert (await redis_limits.get_moving_window(mine_key, 2, 3600))[1] == 2


async def test_memory_paid_limits_wait_for_the_window_that_refused(clock: Clock) -> None:
    storage = MemoryStorage()
    limits = PaidCallLimits(Limiter(storage), "2/minute", "3/minute")
    # `limits` keeps this storage on the real clock; `retry_after` reads `ratelimit.time`.
    clock.now = time.time()
    assert (await limits.hit("user:1")).remaining == 1
    assert (await limits.hit("user:1")).remaining == 0
    clock.now = time.time()
    with pytest.raises(RateLimited) as mine:
        await limits.hit("user:1")
    assert _refusal(mine)["X-RateLimit-Remaining"] == "0"
    assert 59 <= int(_refusal(mine)["Retry-After"]) <= 60
    assert (await limits.hit("user:2")).remaining == 1  # the third call of the global window
    clock.now = time.time()
    with pytest.raises(RateLimited) as every:
        await limits.hit("user:3")
    assert _refusal(every)["X-RateLimit-Remaining"] == "1"
    assert 59 <= int(_refusal(every)["Retry-After"]) <= 60
    # Half a second before the first call leaves the windows: retry in 1 s (rounded up).
    clock.now = time.time() + 59.5
    with pytest.raises(RateLimited) as soon:
        await limits.hit("user:1")
    assert _refusal(soon)["Retry-After"] == "1"
    with pytest.raises(RateLimited) as soon:
        await limits.hit("user:4")
    assert _refusal(soon)["Retry-After"] == "1"


async def test_paid_limits_count_apart_under_each_key_prefix(redis_server: PrivateRedis) -> None:
    """Deployments (and test workers) sharing one Redis keep their own counts."""
    client: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushdb()
    ours = PaidCallLimits(Limiter(create_storage(redis_server.url, "ours")), "1/minute", "9/minute")
    theirs = PaidCallLimits(
        Limiter(create_storage(redis_server.url, "theirs")), "1/minute", "9/minute"
    )
    await ours.hit("user:1")
    assert (await theirs.hit("user:1")).remaining == 0  # its own first call
    keys = {str(key) for key in await client.keys("*")}  # decoded: str already
    await client.aclose()
    assert keys and all(key.startswith(("ours:", "theirs:")) for key in keys), keys


async def test_with_the_store_down_each_payer_keeps_its_own_per_process_cap() -> None:
    class Down(MemoryStorage):
        async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
            raise ConnectionError("store down")

    limits = PaidCallLimits(Limiter(Down()), "1/minute", "100/minute")
    assert (await limits.hit("user:1")).remaining == 0
    assert (await limits.hit("user:2")).remaining == 0  # not refused: its own first call
    with pytest.raises(RateLimited):
        await limits.hit("user:1")
