"""The charge step of paid routes, through a test-only paid route over a fake data source."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AppFactory
from tests.credits_factories import (
    assert_ledger_consistent,
    balance,
    grant,
    ledger,
    mount_paid_test_routes,
    set_price,
)
from tests.factories import Account, register, register_admin

LOOKUP = "/api/v1/test-paid/lookup"
BATCH = "/api/v1/test-paid/batch"


class Paid:
    """An app with the test paid routes, its client, an admin and a funded user."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, admin: Account, user: Account):
        self.app, self.client, self.admin, self.user = app, client, admin, user

    async def lookup(self, code: str, account: Account | None = None) -> httpx.Response:
        headers = (account or self.user).headers
        return await self.client.post(LOOKUP, json={"code": code}, headers=headers)

    async def batch(self, codes: list[str]) -> httpx.Response:
        return await self.client.post(BATCH, json={"codes": codes}, headers=self.user.headers)


async def paid_setup(make_app: AppFactory, credits: int, **settings: Any) -> tuple[Paid, Any]:
    app = mount_paid_test_routes(await make_app(**settings))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    admin = await register_admin(client, app)
    user = await register(client)
    if credits:
        assert (await grant(client, admin, user.id, credits)).status_code == 200
    return Paid(app, client, admin, user), client


@pytest.fixture
async def paid(make_app: AppFactory) -> Any:
    setup, client = await paid_setup(make_app, 10)
    async with aclosing(client):
        yield setup
    await assert_ledger_consistent(setup.app)


async def test_paid_call_charges_once_and_sends_credit_and_rate_headers(paid: Paid) -> None:
    response = await paid.lookup("B000000001")
    assert response.status_code == 200, response.text
    assert response.json()["code"] == "B000000001"
    assert response.headers["X-Credits-Charged"] == "1"
    assert response.headers["X-Credits-Remaining"] == "9"
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.headers["X-RateLimit-Remaining"] == "99"
    [_, charge] = await ledger(paid.app, paid.user.id)
    assert (charge.kind, charge.amount, charge.endpoint) == ("charge", -1, "asin_lookup")
    assert charge.reference == "B000000001"
    body = (await paid.client.get("/api/v1/credits", headers=paid.user.headers)).json()
    assert body == {"balance": 9, "lifetime_purchased": 0, "lifetime_spent": 1}


async def test_repeat_within_window_is_free_and_writes_no_ledger_entry(paid: Paid) -> None:
    assert (await paid.lookup("B000000001")).headers["X-Credits-Charged"] == "1"
    again = await paid.lookup("B000000001")
    assert again.status_code == 200
    assert again.headers["X-Credits-Charged"] == "0"
    assert again.headers["X-Credits-Remaining"] == "9"
    assert again.headers["X-RateLimit-Remaining"] == "98"  # free repeats still count
    assert len(await ledger(paid.app, paid.user.id)) == 2
    assert (await paid.lookup("B000000002")).headers["X-Credits-Charged"] == "1"
    assert await balance(paid.client, paid.user) == 8


async def test_same_code_fired_concurrently_is_paid_once(paid: Paid) -> None:
    responses = await asyncio.gather(*(paid.lookup("B000000007") for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert sorted(r.headers["X-Credits-Charged"] for r in responses) == ["0"] * 9 + ["1"]
    assert await balance(paid.client, paid.user) == 9


async def test_invalid_input_is_never_charged_nor_counted(paid: Paid) -> None:
    for body in ({"code": "short"}, {}, {"code": "B000000001", "extra": 1}, {"code": None}):
        response = await paid.client.post(LOOKUP, json=body, headers=paid.user.headers)
        assert response.status_code == 422
        assert response.json()["error"] == "validation_error"
    ok = await paid.lookup("B000000001")
    assert ok.headers["X-RateLimit-Remaining"] == "99"
    assert await balance(paid.client, paid.user) == 9


async def test_not_found_is_refunded_in_the_same_request(paid: Paid) -> None:
    response = await paid.lookup("NF00000001")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert response.headers["X-Credits-Charged"] == "0"
    assert response.headers["X-Credits-Remaining"] == "10"
    assert "X-RateLimit-Remaining" in response.headers
    entries = await ledger(paid.app, paid.user.id)
    assert [(e.kind, e.amount) for e in entries[1:]] == [("charge", -1), ("refund", 1)]
    assert await balance(paid.client, paid.user) == 10
    body = (await paid.client.get("/api/v1/credits", headers=paid.user.headers)).json()
    assert body["lifetime_spent"] == 0


@pytest.mark.parametrize(("code", "status"), [("UP00000001", 502), ("BOOM000001", 500)])
async def test_failed_upstream_call_nets_zero_with_both_entries(
    paid: Paid, code: str, status: int
) -> None:
    response = await paid.lookup(code)
    assert response.status_code == status
    if status == 502:
        assert response.json()["error"] == "upstream_unavailable"
    assert await balance(paid.client, paid.user) == 10
    entries = await ledger(paid.app, paid.user.id)
    assert [(e.kind, e.amount) for e in entries[1:]] == [("charge", -1), ("refund", 1)]
    # The marker went with the refund: a later success is charged, once.
    retry = await paid.lookup("Z" + code[1:])
    assert retry.headers["X-Credits-Charged"] == "1"


async def test_insufficient_credits_is_402_with_details_and_no_ledger_entry(
    make_app: AppFactory,
) -> None:
    setup, client = await paid_setup(make_app, 0)
    async with aclosing(client):
        response = await setup.lookup("B000000001")
        assert response.status_code == 402
        assert response.json()["error"] == "insufficient_credits"
        assert response.json()["details"] == {"balance": 0, "required": 1}
        assert response.headers["X-Credits-Charged"] == "0"
        assert await ledger(setup.app, setup.user.id) == []
        await grant(client, setup.admin, setup.user.id, 1)
        assert (await setup.lookup("B000000001")).status_code == 200
        # The refused call left no repeat marker: the second code is not free.
        again = await setup.lookup("B000000002")
        assert again.status_code == 402
        assert again.json()["details"] == {"balance": 0, "required": 1}
    await assert_ledger_consistent(setup.app)


async def test_over_the_per_payer_limit_is_429_with_retry_after(make_app: AppFactory) -> None:
    setup, client = await paid_setup(make_app, 10, RATE_LIMIT_DEFAULT="3/minute")
    async with aclosing(client):
        codes = ["B000000001", "B000000001", "B000000002"]
        assert [(await setup.lookup(c)).status_code for c in codes] == [200, 200, 200]
        refused = await setup.lookup("B000000003")
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["X-RateLimit-Limit"] == "3"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert await balance(client, setup.user) == 8
        other = await register(client)
        await grant(client, setup.admin, other.id, 1)
        assert (await setup.lookup("B000000003", other)).status_code == 200
    await assert_ledger_consistent(setup.app)


async def test_over_the_global_limit_is_429(make_app: AppFactory) -> None:
    setup, client = await paid_setup(make_app, 10, RATE_LIMIT_GLOBAL="2/minute")
    async with aclosing(client):
        other = await register(client)
        await grant(client, setup.admin, other.id, 10)
        assert (await setup.lookup("B000000001")).status_code == 200
        assert (await setup.lookup("B000000002", other)).status_code == 200
        refused = await setup.lookup("B000000003", other)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert await balance(client, other) == 9
    await assert_ledger_consistent(setup.app)


async def test_limiter_store_down_fails_open_with_a_per_process_cap(make_app: AppFactory) -> None:
    setup, client = await paid_setup(make_app, 10)
    # A second process of the same service whose Redis is unreachable.
    down = mount_paid_test_routes(
        await make_app(REDIS_URL="redis://127.0.0.1:1/0", RATE_LIMIT_DEFAULT="2/minute")
    )
    transport = httpx.ASGITransport(app=down)
    async with aclosing(client), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        headers = setup.user.headers
        first = await c.post(LOOKUP, json={"code": "B000000001"}, headers=headers)
        assert first.status_code == 200, first.text
        assert first.headers["X-RateLimit-Remaining"] == "1"
        second = await c.post(LOOKUP, json={"code": "B000000002"}, headers=headers)
        assert second.status_code == 200
        third = await c.post(LOOKUP, json={"code": "B000000003"}, headers=headers)
        assert third.status_code == 429
        assert await balance(client, setup.user) == 8
    await assert_ledger_consistent(setup.app)


async def test_repeat_window_zero_charges_every_call(make_app: AppFactory) -> None:
    setup, client = await paid_setup(make_app, 10, CREDITS_REPEAT_WINDOW=0)
    async with aclosing(client):
        for _ in range(3):
            assert (await setup.lookup("B000000001")).headers["X-Credits-Charged"] == "1"
        assert await balance(client, setup.user) == 7
    await assert_ledger_consistent(setup.app)


# --------------------------------------------------------------------------- batch


async def test_batch_charges_found_codes_in_one_ledger_entry(paid: Paid) -> None:
    codes = ["B000000001", "NF00000001", "B000000002", "B000000001", "B000000003"]
    response = await paid.batch(codes)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["charged"] == 3
    assert [r["status"] for r in body["results"]] == ["found", "not_found"] + ["found"] * 3
    assert response.headers["X-Credits-Charged"] == "3"
    assert response.headers["X-Credits-Remaining"] == "7"
    entries = await ledger(paid.app, paid.user.id)
    assert [(e.kind, e.amount, e.endpoint) for e in entries[1:]] == [
        ("charge", -3, "fnsku_conversion")
    ]
    again = await paid.batch(["B000000001", "B000000004"])
    assert again.json()["charged"] == 1
    assert await balance(paid.client, paid.user) == 6


async def test_batch_short_of_credits_is_402_and_charges_nothing(paid: Paid) -> None:
    codes = [f"B{n:09d}" for n in range(11)]
    response = await paid.batch(codes)
    assert response.status_code == 402
    assert response.json()["details"] == {"balance": 10, "required": 11}
    assert len(await ledger(paid.app, paid.user.id)) == 1
    # Nothing was marked paid either: the same codes cost again once affordable.
    affordable = await paid.batch(codes[:10])
    assert affordable.json()["charged"] == 10
    assert await balance(paid.client, paid.user) == 0


async def test_batch_of_more_than_1000_codes_is_422(paid: Paid) -> None:
    response = await paid.batch(["B000000001"] * 1001)
    assert response.status_code == 422
    assert await balance(paid.client, paid.user) == 10


# --------------------------------------------------------------------------- concurrency


# Hundreds of requests at once: never beside another such test (pytest-xdist, see Makefile).
@pytest.mark.xdist_group("heavy_concurrency")
async def test_500_concurrent_paid_calls_never_overdraw(make_app: AppFactory) -> None:
    setup, client = await paid_setup(
        make_app, 1000, RATE_LIMIT_DEFAULT="10000/minute", RATE_LIMIT_GLOBAL="100000/minute"
    )
    async with aclosing(client):
        await set_price(client, setup.admin, "asin_lookup", 7)
        responses = await asyncio.gather(*(setup.lookup(f"C{n:09d}") for n in range(500)))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 142
        assert statuses.count(402) == 358
        assert not [s for s in statuses if s >= 500]
        assert await balance(client, setup.user) == 6
        entries = await ledger(setup.app, setup.user.id)
        assert sum(e.amount for e in entries) == 6
        assert len([e for e in entries if e.kind == "charge"]) == 142
    await assert_ledger_consistent(setup.app)


async def test_overlapping_batches_and_lookups_fired_together_pay_each_code_once(
    make_app: AppFactory,
) -> None:
    setup, client = await paid_setup(make_app, 1000, RATE_LIMIT_DEFAULT="10000/minute")
    async with aclosing(client):
        codes = [f"D{n:09d}" for n in range(30)]
        batches = [codes[i:] + codes[:i] for i in range(0, 30, 3)]  # same codes, other orders
        calls = [setup.batch(list(reversed(b)) if i % 2 else b) for i, b in enumerate(batches)]
        calls += [setup.lookup(code) for code in codes[:10]]
        responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200] * len(calls)
        assert await balance(client, setup.user) == 1000 - 30 - 10  # lookups are another endpoint
    await assert_ledger_consistent(setup.app)
