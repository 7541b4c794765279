"""The real paid Amazon routes through the charge step, end to end on the `local` source."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import aclosing

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select

from sellerdesk.models import CreditCharge
from tests.conftest import AppFactory
from tests.credits_factories import (
    assert_ledger_consistent,
    balance,
    create_key,
    grant,
    ledger,
    set_price,
)
from tests.factories import Account, register, register_admin
from tests.fakes.spapi import (
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    FakeSpApi,
    catalog_item,
    serve_fake,
)

ASIN = "/api/v1/product/asin"
FNSKU = "/api/v1/conversion/fnsku"
BATCH = "/api/v1/conversion/fnsku/batch"


def fnsku(n: int) -> str:
    return f"X0{n:08d}"


def asin(n: int) -> str:
    return f"B0{n:08d}"


async def upload_report(client: httpx.AsyncClient, account: Account, count: int) -> None:
    """FNSKU n ↔ ASIN n for n in 1..count, as an FBA inventory report."""
    lines = ["sku\tfnsku\tasin\tproduct-name"]
    lines += [f"SKU-{n}\t{fnsku(n)}\t{asin(n)}\tProduct {n}" for n in range(1, count + 1)]
    response = await client.post(
        "/api/v1/conversion/inventory-report",
        files={"file": ("report.txt", "\n".join(lines).encode(), "text/tab-separated-values")},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text


async def funded(
    make_app: AppFactory, credits: int, mappings: int = 5, **settings: object
) -> tuple[FastAPI, httpx.AsyncClient, Account, Account]:
    app = await make_app(**settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    admin = await register_admin(client, app)
    user = await register(client)
    if credits:
        assert (await grant(client, admin, user.id, credits)).status_code == 200
    await upload_report(client, user, mappings)
    return app, client, admin, user


async def test_fnsku_conversion_is_charged_once_and_repeats_are_free(
    make_app: AppFactory,
) -> None:
    app, client, _, user = await funded(make_app, 10)
    async with aclosing(client):
        first = await client.post(FNSKU, json={"fnsku": " x000000001 "}, headers=user.headers)
        assert first.status_code == 200, first.text
        assert first.json()["asin"] == asin(1)
        assert first.headers["X-Credits-Charged"] == "1"
        assert first.headers["X-Credits-Remaining"] == "9"
        assert first.headers["X-RateLimit-Limit"] == "100"
        again = await client.post(FNSKU, json={"fnsku": fnsku(1)}, headers=user.headers)
        assert again.headers["X-Credits-Charged"] == "0"
        unknown = await client.post(FNSKU, json={"fnsku": fnsku(99)}, headers=user.headers)
        assert unknown.status_code == 404
        assert unknown.headers["X-Credits-Charged"] == "0"
        invalid = await client.post(FNSKU, json={"fnsku": "nope"}, headers=user.headers)
        assert invalid.status_code == 422
        assert await balance(client, user) == 9
        # The local source answers from the database, in the transaction that charges: the
        # unknown code wrote nothing at all (no charge and refund pair).
        kinds = [(e.kind, e.amount) for e in await ledger(app, user.id)]
        assert kinds == [("grant", 10), ("charge", -1)]
    await assert_ledger_consistent(app)


async def test_asin_lookup_costs_its_price_and_unknown_asin_is_free(make_app: AppFactory) -> None:
    app, client, admin, user = await funded(make_app, 10)
    async with aclosing(client):
        await set_price(client, admin, "asin_lookup", 3)
        key = await create_key(client, user)
        found = await client.post(ASIN, json={"asin": asin(2)}, headers={"X-API-Key": key["key"]})
        assert found.status_code == 200, found.text
        assert found.json()["asin"] == asin(2)
        assert found.headers["X-Credits-Charged"] == "3"
        unknown = await client.post(ASIN, json={"asin": asin(77)}, headers=user.headers)
        assert unknown.status_code == 404
        assert await balance(client, user) == 7
        none = await client.post(ASIN, json={"asin": asin(2)})
        assert (none.status_code, none.json()["error"]) == (401, "not_authenticated")
    await assert_ledger_consistent(app)


async def test_a_local_paid_call_is_one_transaction_and_a_miss_writes_nothing(
    make_app: AppFactory,
) -> None:
    app, client, _, user = await funded(make_app, 10)
    commits: list[int] = []
    event.listen(app.state.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    async with aclosing(client):
        found = await client.post(FNSKU, json={"fnsku": fnsku(1)}, headers=user.headers)
        assert (found.status_code, found.headers["X-Credits-Charged"]) == (200, "1")
        assert len(commits) == 1  # the charge is committed with the answer, in one transaction
        commits.clear()
        unknown = await client.post(ASIN, json={"asin": asin(77)}, headers=user.headers)
        assert (unknown.status_code, unknown.headers["X-Credits-Charged"]) == (404, "0")
        assert unknown.headers["X-Credits-Remaining"] == "9"
        assert commits == []
    async with app.state.sessionmaker() as session:
        charges = list(await session.scalars(select(CreditCharge).order_by(CreditCharge.id)))
    assert [(c.endpoint, c.codes, c.credits, c.outcome) for c in charges] == [
        ("fnsku_conversion", [fnsku(1)], 1, "served")
    ]
    assert charges[0].settled_at is not None
    assert [(e.kind, e.amount) for e in await ledger(app, user.id)] == [
        ("grant", 10),
        ("charge", -1),
    ]
    await assert_ledger_consistent(app)


async def test_batch_is_one_ledger_entry_for_found_codes(make_app: AppFactory) -> None:
    app, client, _, user = await funded(make_app, 10)
    async with aclosing(client):
        codes = [fnsku(1), fnsku(2), fnsku(50), "bad", fnsku(3)]
        response = await client.post(BATCH, json={"fnskus": codes}, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["charged"] == 3
        assert [r["status"] for r in body["results"]] == [
            "found",
            "found",
            "not_found",
            "invalid",
            "found",
        ]
        assert response.headers["X-Credits-Charged"] == "3"
        entries = await ledger(app, user.id)
        assert [(e.kind, e.amount) for e in entries[1:]] == [("charge", -3)]
        repeat = await client.post(
            BATCH, json={"fnskus": [fnsku(1), fnsku(4)]}, headers=user.headers
        )
        assert repeat.json()["charged"] == 1
        assert await balance(client, user) == 6
    await assert_ledger_consistent(app)


async def test_batch_short_of_credits_is_402_and_charges_nothing(make_app: AppFactory) -> None:
    app, client, _, user = await funded(make_app, 2)
    async with aclosing(client):
        codes = [fnsku(n) for n in range(1, 6)]
        response = await client.post(BATCH, json={"fnskus": codes}, headers=user.headers)
        assert response.status_code == 402
        assert response.json()["error"] == "insufficient_credits"
        assert response.json()["details"] == {"balance": 2, "required": 5}
        assert len(await ledger(app, user.id)) == 1
        assert await balance(client, user) == 2
    await assert_ledger_consistent(app)


# Hundreds of requests at once: never beside another such test (pytest-xdist, see Makefile).
@pytest.mark.xdist_group("heavy_concurrency")
async def test_500_concurrent_conversions_charge_exactly_what_the_balance_allows(
    make_app: AppFactory,
) -> None:
    app, client, admin, user = await funded(
        make_app,
        1000,
        mappings=500,
        RATE_LIMIT_DEFAULT="10000/minute",
        RATE_LIMIT_GLOBAL="100000/minute",
    )
    async with aclosing(client):
        await set_price(client, admin, "fnsku_conversion", 7)
        responses = await asyncio.gather(
            *(
                client.post(FNSKU, json={"fnsku": fnsku(n)}, headers=user.headers)
                for n in range(1, 501)
            )
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 142
        assert statuses.count(402) == 358
        assert all(s < 500 for s in statuses)
        assert await balance(client, user) == 6
        assert sum(e.amount for e in await ledger(app, user.id)) == 6
    await assert_ledger_consistent(app)


@pytest.fixture(scope="module")
def amazon_fake() -> Iterator[FakeSpApi]:
    with serve_fake() as fake:
        yield fake


async def test_failed_upstream_call_nets_zero_with_both_ledger_entries(
    make_app: AppFactory, amazon_fake: FakeSpApi
) -> None:
    amazon_fake.reset()
    amazon_fake.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    amazon_fake.fail = 4  # more server errors than retries
    app = await make_app(
        AMAZON_PROVIDER="sp-api",
        SPAPI_LWA_URL=f"{amazon_fake.base_url}/auth/o2/token",
        SPAPI_ENDPOINT=amazon_fake.base_url,
        SPAPI_REFRESH_TOKEN=REFRESH_TOKEN,
        SPAPI_CLIENT_ID=CLIENT_ID,
        SPAPI_CLIENT_SECRET=CLIENT_SECRET,
        SPAPI_MAX_RETRIES=3,
        SPAPI_BACKOFF_SECONDS=0.005,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        admin = await register_admin(client, app)
        user = await register(client)
        await grant(client, admin, user.id, 5)
        failed = await client.post(ASIN, json={"asin": "B0EXAMPLE1"}, headers=user.headers)
        assert failed.status_code == 502
        assert failed.json()["error"] == "upstream_unavailable"
        assert failed.headers["X-Credits-Charged"] == "0"
        assert failed.headers["X-Credits-Remaining"] == "5"
        entries = [(e.kind, e.amount) for e in await ledger(app, user.id)]
        assert entries == [("grant", 5), ("charge", -1), ("refund", 1)]
        served = await client.post(ASIN, json={"asin": "B0EXAMPLE1"}, headers=user.headers)
        assert served.status_code == 200
        assert served.headers["X-Credits-Charged"] == "1"
        assert await balance(client, user) == 4
    amazon_fake.reset()
    await assert_ledger_consistent(app)


async def test_idempotency_key_replays_a_paid_call_without_charging_again(
    make_app: AppFactory,
) -> None:
    app, client, _, user = await funded(make_app, 10, CREDITS_REPEAT_WINDOW=0)
    async with aclosing(client):
        headers = {**user.headers, "Idempotency-Key": "lookup-1"}
        first = await client.post(FNSKU, json={"fnsku": fnsku(1)}, headers=headers)
        second = await client.post(FNSKU, json={"fnsku": fnsku(1)}, headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert second.headers.get("Idempotent-Replayed") == "true"
        other = await client.post(FNSKU, json={"fnsku": fnsku(2)}, headers=headers)
        assert other.status_code == 422
        assert other.json()["error"] == "idempotency_conflict"
        plain = await client.post(FNSKU, json={"fnsku": fnsku(1)}, headers=user.headers)
        assert plain.headers["X-Credits-Charged"] == "1"  # no key, no repeat window: charged
        assert await balance(client, user) == 8
    await assert_ledger_consistent(app)
