"""Many processes, one truth: two `sellerdesk serve` processes on different ports, one PostgreSQL
database and one Redis (migrated and seeded with the CLI), behave as one service.

What would break if state were kept per process: the paid-call limit (each process would allow
the full limit), idempotency keys (each process would run the request once), the catalog cache
(a process would serve its own stale copy) and credit charges (two processes could spend the
same credits).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from sellerdesk.models import CreditAccount, CreditLedger, Order, Product
from sellerdesk.seed import DEMO_ADMIN
from tests.conftest import _ROOT_TAG, REDIS_URL, _create_pg_database, _worker
from tests.live_server import Server, cli, environment
from tests.orders_factories import ADDRESS

pytestmark = pytest.mark.postgres_only  # one database and one Redis shared by processes

PAID_CALLS_PER_MINUTE = 20
_seq = itertools.count(1)


@dataclass
class Cluster:
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    database_url: str
    admin: dict[str, str]

    async def user(self, credits: int = 0) -> dict[str, str]:
        """A new user, registered through A and logged in through B; `credits` granted."""
        email = f"mp{next(_seq)}-{uuid.uuid4().hex[:6]}@example.com"
        body = {"email": email, "password": "correct-horse-battery"}
        created = await self.a.post("/api/v1/auth/register", json=body)
        assert created.status_code == 201, created.text
        login = await self.b.post("/api/v1/auth/login", json=body)
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        if credits:
            grant = await self.a.post(
                "/api/v1/admin/credits/grant",
                json={"user_id": created.json()["id"], "amount": credits, "reason": "test"},
                headers=self.admin,
            )
            assert grant.status_code == 200, grant.text
        return headers

    async def scalar(self, statement: Any) -> Any:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(statement)).scalar()
        finally:
            await engine.dispose()


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    database_url = await _create_pg_database("_mp")
    prefix = f"sdtest:{_ROOT_TAG}:{_worker()}:mp:{os.urandom(4).hex()}"
    env = environment(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=prefix,
        RATE_LIMIT_DEFAULT=f"{PAID_CALLS_PER_MINUTE}/minute",
        CREDITS_REPEAT_WINDOW="0",  # every lookup is charged: repeats cannot hide a double run
        CACHE_TTL_SECONDS="300",
    )
    await asyncio.to_thread(cli, env, "migrate")
    await asyncio.to_thread(cli, env, "seed")
    servers = [Server(env), Server(env)]
    try:
        await asyncio.gather(*(server.wait_ready() for server in servers))
        async with (
            httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as a,
            httpx.AsyncClient(base_url=servers[1].base_url, timeout=30) as b,
        ):
            login = await a.post(
                "/api/v1/auth/login", json={"email": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
            )
            assert login.status_code == 200, login.text
            admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
            yield Cluster(a, b, database_url, admin)
    finally:
        for server in servers:
            server.stop()
        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def _asins(cluster: Cluster, count: int) -> list[str]:
    """ASINs of seeded catalog products: the `local` source finds them (and charges)."""
    engine = create_async_engine(cluster.database_url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Product.asin).where(Product.asin.is_not(None)).order_by(Product.id).limit(count)
        )
        asins = [row[0] for row in rows]
    await engine.dispose()
    assert len(asins) == count
    return asins


async def test_the_paid_call_limit_is_counted_across_both_processes(cluster: Cluster) -> None:
    headers = await cluster.user(credits=100)
    [asin] = await _asins(cluster, 1)
    for n in range(PAID_CALLS_PER_MINUTE):
        client = cluster.a if n % 2 else cluster.b
        response = await client.post("/api/v1/product/asin", json={"asin": asin}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["X-RateLimit-Remaining"] == str(PAID_CALLS_PER_MINUTE - n - 1)

    for client in (cluster.a, cluster.b):
        refused = await client.post("/api/v1/product/asin", json={"asin": asin}, headers=headers)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1


async def test_an_idempotency_key_has_one_effect_whichever_process_gets_it(
    cluster: Cluster,
) -> None:
    headers = await cluster.user(credits=10)
    [asin] = await _asins(cluster, 1)
    key = {"Idempotency-Key": f"lookup-{uuid.uuid4()}"}
    body = {"asin": asin}

    first = await cluster.a.post("/api/v1/product/asin", json=body, headers={**headers, **key})
    replay = await cluster.b.post("/api/v1/product/asin", json=body, headers={**headers, **key})
    assert first.status_code == replay.status_code == 200
    assert first.headers["X-Credits-Charged"] == "1"
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    # Without the key the same lookup is charged again (the repeat window is 0 here): the
    # replay above was the key's doing.
    again = await cluster.b.post("/api/v1/product/asin", json=body, headers=headers)
    assert again.headers["X-Credits-Charged"] == "1"
    balance = await cluster.a.get("/api/v1/credits", headers=headers)
    assert balance.json()["balance"] == 8


async def test_one_checkout_key_sent_to_both_processes_at_once_places_one_order(
    cluster: Cluster,
) -> None:
    headers = await cluster.user()
    product_id = await cluster.scalar(
        select(Product.id).where(Product.stock_quantity >= 10).order_by(Product.id).limit(1)
    )
    cart = await cluster.a.put(
        f"/api/v1/cart/items/{product_id}", json={"quantity": 1}, headers=headers
    )
    assert cart.status_code == 200, cart.text
    key = {"Idempotency-Key": f"checkout-{uuid.uuid4()}"}
    body = {"shipping_address": ADDRESS}

    answers = await asyncio.gather(
        *(
            client.post("/api/v1/orders", json=body, headers={**headers, **key})
            for client in (cluster.a, cluster.b, cluster.a, cluster.b)
        )
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {201, 409}, [answer.text for answer in answers]
    placed = {answer.json()["id"] for answer in answers if answer.status_code == 201}
    assert len(placed) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"] == "idempotency_conflict"
    # A retry of the refused ones, through either process, gets the same order.
    retry = await cluster.b.post("/api/v1/orders", json=body, headers={**headers, **key})
    assert retry.status_code == 201 and retry.json()["id"] in placed
    user_id = (await cluster.a.get("/api/v1/users/me", headers=headers)).json()["id"]
    assert await cluster.scalar(select(func.count()).where(Order.user_id == user_id)) == 1


async def test_a_product_update_through_one_process_is_read_at_once_through_the_other(
    cluster: Cluster,
) -> None:
    product_id = await cluster.scalar(select(Product.id).order_by(Product.id.desc()).limit(1))
    path = f"/api/v1/products/{product_id}"
    await cluster.b.get(path)
    cached = await cluster.b.get(path)
    assert cached.headers["X-Cache"] == "hit"  # B serves it from the shared cache now

    renamed = f"Renamed through A {uuid.uuid4().hex[:8]}"
    update = await cluster.a.patch(path, json={"name": renamed}, headers=cluster.admin)
    assert update.status_code == 200, update.text

    fresh = await cluster.b.get(path)
    assert fresh.json()["name"] == renamed
    listing = await cluster.b.get("/api/v1/products", params={"q": renamed})
    assert [item["id"] for item in listing.json()["items"]] == [product_id]


async def test_concurrent_charges_through_both_processes_never_overspend(
    cluster: Cluster,
) -> None:
    credits = 5
    headers = await cluster.user(credits=credits)
    asins = await _asins(cluster, 12)
    answers = await asyncio.gather(
        *(
            (cluster.a if n % 2 else cluster.b).post(
                "/api/v1/product/asin", json={"asin": asin}, headers=headers
            )
            for n, asin in enumerate(asins)
        )
    )
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == credits, [answer.text for answer in answers]
    assert statuses.count(402) == len(asins) - credits
    for answer in answers:
        assert answer.json().get("error") in (None, "insufficient_credits")

    me = (await cluster.b.get("/api/v1/users/me", headers=headers)).json()["id"]
    balance = await cluster.scalar(select(CreditAccount.balance).where(CreditAccount.user_id == me))
    ledger = await cluster.scalar(
        select(func.coalesce(func.sum(CreditLedger.amount), 0)).where(CreditLedger.user_id == me)
    )
    assert balance == ledger == 0
