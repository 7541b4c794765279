"""Amazon's request quotas: the pacer holds 2 requests/s per seller and operation, across
processes through Redis; a burst beyond the quota waits a bounded time, then answers 503 with
Retry-After and is not charged; a cache hit costs no quota."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sellerdesk.amazon.errors import QuotaExhausted
from sellerdesk.amazon.quota import Pacer
from tests.conftest import AppFactory
from tests.credits_factories import assert_ledger_consistent, balance, grant, ledger
from tests.factories import register, register_admin
from tests.fakes.spapi import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, FakeSpApi, catalog_item
from tests.spapi_helpers import ASIN, asgi_client, spapi_settings

pytest_plugins = ["tests.spapi_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
# Arrivals at the fake drift from the pacer's slots by a few milliseconds (and more on a busy
# machine); the bound below allows this much drift.
JITTER = 0.25


def assert_within_bucket(arrivals: Sequence[float], rate: float, burst: int) -> None:
    """No window of the arrivals holds more calls than a token bucket of rate/burst allows."""
    times = sorted(arrivals)
    for (i, first), (j, last) in itertools.combinations(enumerate(times), 2):
        calls = j - i + 1
        allowed = burst + rate * (last - first + JITTER)
        assert calls <= allowed, f"{calls} calls in {last - first:.3f} s: {times}"


async def test_the_pacer_holds_2_requests_per_second_across_two_processes(
    spapi: FakeSpApi, redis_url: str | None, redis_prefix: str, redis: Redis | None
) -> None:
    if redis_url is None:
        pytest.skip("the shared bucket lives in Redis (TEST_BACKEND=postgres)")
    asins = [f"B0PROC{i:04d}" for i in range(8)]
    for asin in asins:
        spapi.catalog[asin] = catalog_item(asin)
    settings = {
        "REDIS_KEY_PREFIX": redis_prefix,
        "SPAPI_LWA_URL": spapi.lwa_url,
        "SPAPI_ENDPOINT": spapi.base_url,
        "SPAPI_REFRESH_TOKEN": REFRESH_TOKEN,
        "SPAPI_CLIENT_ID": CLIENT_ID,
        "SPAPI_CLIENT_SECRET": CLIENT_SECRET,
        "SPAPI_MAX_WAIT_SECONDS": 30,  # nobody gives up: this test is about the pace
    }
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.spapi_quota_worker",
            json.dumps({"settings": settings, "redis_url": redis_url, "asins": half}),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for half in (asins[:4], asins[4:])
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=60)
            assert line.strip() == b"ready", line
        for worker in workers:  # both start firing at once
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        outcomes = []
        for worker in workers:
            assert worker.stdout is not None
            outcomes += json.loads(await asyncio.wait_for(worker.stdout.readline(), timeout=60))
            assert await asyncio.wait_for(worker.wait(), timeout=30) == 0
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()

    assert outcomes == ["ok"] * 8
    assert spapi.tokens_issued == ["NA", "NA"]  # one token exchange per process
    arrivals = [call.at for call in spapi.received if call.operation == "catalog"]
    assert len(arrivals) == 8
    # Two processes, one seller: together they keep to one bucket of 2/s, burst 2 (two
    # in-process buckets would have let 4 calls through at once).
    assert_within_bucket(arrivals, rate=2.0, burst=2)
    assert max(arrivals) - min(arrivals) >= (8 - 2) / 2.0 - JITTER


async def test_the_pacer_holds_2_requests_per_second_within_one_app(
    make_app: AppFactory, spapi: FakeSpApi, free_data_calls: None
) -> None:
    asins = [f"B0BURS{i:04d}" for i in range(6)]
    for asin in asins:
        spapi.catalog[asin] = catalog_item(asin)
    app = await make_app(**spapi_settings(spapi, SPAPI_MAX_WAIT_SECONDS=10))
    async with asgi_client(app) as client:
        account = await register(client)
        responses = await asyncio.gather(
            *(client.post(ASIN, headers=account.headers, json={"asin": a}) for a in asins)
        )
    assert [r.status_code for r in responses] == [200] * 6
    arrivals = [call.at for call in spapi.received]
    assert_within_bucket(arrivals, rate=2.0, burst=2)
    assert max(arrivals) - min(arrivals) >= (6 - 2) / 2.0 - JITTER


async def test_a_burst_beyond_the_quota_answers_503_with_retry_after_and_is_not_charged(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    asins = [f"B0SPNT{i:04d}" for i in range(6)]
    for asin in asins:
        spapi.catalog[asin] = catalog_item(asin)
    # No waiting at all, and a slow refill: what the bucket holds (a burst of 2) is served, the
    # rest refused.
    spapi.rate_limit = "0.1"
    app = await make_app(**spapi_settings(spapi, SPAPI_MAX_WAIT_SECONDS=0, SPAPI_DEFAULT_RATE=0.1))
    async with asgi_client(app) as client:
        admin = await register_admin(client, app)
        user = await register(client)
        assert (await grant(client, admin, user.id, 10)).status_code == 200
        responses = await asyncio.gather(
            *(client.post(ASIN, headers=user.headers, json={"asin": a}) for a in asins)
        )
        served = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 503]
        assert (len(served), len(refused)) == (2, 4)
        for response in refused:
            assert response.json()["error"] == "upstream_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["X-Credits-Charged"] == "0"
        # Only the served lookups cost credits; a refused one nets zero in the ledger.
        assert await balance(client, user) == 10 - len(served)
        assert sum(entry.amount for entry in await ledger(app, user.id)) == 10 - len(served)
        # Amazon never saw the refused calls: they were stopped before the wire.
        assert spapi.calls["catalog"] == len(served)
    await assert_ledger_consistent(app)


async def test_a_cache_hit_costs_no_quota(
    make_app: AppFactory, spapi: FakeSpApi, free_data_calls: None
) -> None:
    for asin in ("B0CACHE001", "B0CACHE002", "B0CACHE003"):
        spapi.catalog[asin] = catalog_item(asin)
    # A slow refill (one call per 10 s after a burst of 2), so only the burst is there.
    spapi.rate_limit = "0.1"
    app = await make_app(**spapi_settings(spapi, SPAPI_MAX_WAIT_SECONDS=0, SPAPI_DEFAULT_RATE=0.1))
    async with asgi_client(app) as client:
        account = await register(client)

        async def lookup(asin: str) -> int:
            response = await client.post(ASIN, headers=account.headers, json={"asin": asin})
            return response.status_code

        assert await lookup("B0CACHE001") == 200  # the bucket's first token
        assert [await lookup("B0CACHE001") for _ in range(5)] == [200] * 5  # cached: free
        assert await lookup("B0CACHE002") == 200  # its second token is still there
        assert await lookup("B0CACHE003") == 503  # now it is spent
    assert spapi.calls["catalog"] == 2


async def test_amazon_throttling_past_the_wait_budget_answers_503_before_the_retries_run_out(
    make_app: AppFactory, spapi: FakeSpApi, free_data_calls: None
) -> None:
    spapi.catalog["B0THROTTLE"] = catalog_item("B0THROTTLE")
    spapi.throttle = 100  # another client of this seller spends the quota
    app = await make_app(**spapi_settings(spapi, SPAPI_MAX_RETRIES=20))
    async with asgi_client(app) as client:
        account = await register(client)
        response = await client.post(ASIN, headers=account.headers, json={"asin": "B0THROTTLE"})
    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    # Back-offs of at least 0.5 s (the 2/s pace) within the 2 s budget: at most 5 tries, not 21.
    assert 2 <= spapi.calls["catalog"] <= 5


async def test_the_shared_bucket_reserves_slots_and_refuses_beyond_the_wait(
    redis: Redis | None, redis_prefix: str
) -> None:
    if redis is None:
        pytest.skip("the shared bucket lives in Redis (TEST_BACKEND=postgres)")
    pacer = Pacer(2.0, 2, redis, f"{redis_prefix}:spapi:quota")
    shared = pacer._shared
    assert shared is not None
    grants = [await shared.reserve("seller:op", 0.5, 2, 0.7) for _ in range(4)]
    assert [granted for granted, _ in grants] == [True, True, True, False]
    waits = [wait for _, wait in grants]
    assert waits[0] == waits[1] == 0
    assert 0.3 <= waits[2] <= 0.5  # the third call waits for the next half second
    assert 0.7 < waits[3] <= 1.0  # the fourth would wait a second: refused, nothing reserved
    with pytest.raises(QuotaExhausted) as refused:
        await pacer.wait("seller", "op", budget=0.6)
    assert refused.value.headers == {"Retry-After": "1"}
    # Another seller, or another operation, has a bucket of its own.
    assert await shared.reserve("other:op", 0.5, 2, 0) == (True, 0.0)


async def test_the_pacer_falls_back_to_this_process_when_redis_is_down() -> None:
    down = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    try:
        pacer = Pacer(2.0, 2, down, "sellerdesk:spapi:quota")
        await pacer.wait("seller", "op", budget=0)
        await pacer.wait("seller", "op", budget=0)
        with pytest.raises(QuotaExhausted):
            await pacer.wait("seller", "op", budget=0)
    finally:
        await down.aclose()


def test_the_rate_comes_from_amazons_header() -> None:
    pacer = Pacer(2.0, 2, None, "sellerdesk:spapi:quota")
    assert pacer.rate("getCatalogItem") == 2.0
    pacer.learn("getCatalogItem", "5.0")
    pacer.learn("getCatalogItem", None)  # 429s carry no header: the rate stays
    pacer.learn("getCatalogItem", "not a number")
    pacer.learn("getCatalogItem", "0")
    assert pacer.rate("getCatalogItem") == 5.0
    assert pacer.rate("getInventorySummaries") == 2.0
