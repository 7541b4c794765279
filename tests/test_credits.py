"""Credits: balance, ledger, packs, pricing, admin grants and purchase payments applied once."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from sellerdesk.credits import service as credits_service
from sellerdesk.models import CreditPurchase, Payment, User
from sellerdesk.seed import DEMO_USER, seed
from tests.conftest import AppFactory, is_postgres
from tests.credits_factories import assert_ledger_consistent, balance, grant, ledger
from tests.factories import Account, register, register_admin


async def test_new_account_has_zero_balance_and_empty_ledger(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    response = await client.get("/api/v1/credits", headers=user.headers)
    assert response.status_code == 200
    assert response.json() == {"balance": 0, "lifetime_purchased": 0, "lifetime_spent": 0}
    txs = await client.get("/api/v1/credits/transactions", headers=user.headers)
    assert txs.json() == {"items": [], "total": 0, "page": 1, "page_size": 20}
    await assert_ledger_consistent(app)


async def test_credits_need_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/credits")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


async def test_fresh_install_offers_packs_and_default_pricing(client: httpx.AsyncClient) -> None:
    packs = await client.get("/api/v1/credits/packs")
    assert packs.status_code == 200
    assert [p["credits"] for p in packs.json()] == [100, 1000, 10000]
    first = packs.json()[0]
    assert set(first) >= {"id", "name", "credits", "price", "currency"}
    assert first["price"] == "9.00" and first["currency"] == "usd"
    pricing = await client.get("/api/v1/credits/pricing")
    assert {p["endpoint"]: p["credits"] for p in pricing.json()} == {
        "asin_lookup": 1,
        "fnsku_conversion": 1,
    }


async def test_admin_grant_and_negative_adjustment_never_below_zero(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    granted = await grant(client, admin, user.id, 50, "welcome")
    assert granted.status_code == 200, granted.text
    assert granted.json()["kind"] == "grant"
    assert granted.json()["balance"] == 50
    taken = await grant(client, admin, user.id, -20, "correction")
    assert taken.json()["kind"] == "adjustment"
    assert taken.json()["amount"] == -20
    too_much = await grant(client, admin, user.id, -31, "too much")
    assert too_much.status_code == 409
    assert too_much.json()["error"] == "conflict"
    assert await balance(client, user) == 30
    body = (await client.get("/api/v1/credits", headers=user.headers)).json()
    assert body == {"balance": 30, "lifetime_purchased": 0, "lifetime_spent": 0}
    assert len(await ledger(app, user.id)) == 2
    await assert_ledger_consistent(app)


async def test_grant_input_rules(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    assert (await grant(client, admin, user.id, 0)).status_code == 422
    assert (await grant(client, admin, 999_999_999, 5)).status_code == 404
    assert (await grant(client, admin, 0, 5)).status_code == 422
    assert (await grant(client, user, user.id, 5)).status_code == 403
    negative_on_new_account = await grant(client, admin, user.id, -1)
    assert negative_on_new_account.status_code == 409
    await assert_ledger_consistent(app)


async def test_transactions_are_newest_first_and_stable_across_pages(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    for amount in range(1, 8):
        assert (await grant(client, admin, user.id, amount, f"g{amount}")).status_code == 200
    seen: list[int] = []
    for page in (1, 2, 3):
        body = (
            await client.get(
                f"/api/v1/credits/transactions?page={page}&page_size=3", headers=user.headers
            )
        ).json()
        assert body["total"] == 7
        seen += [item["id"] for item in body["items"]]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 7
    newest = (await client.get("/api/v1/credits/transactions", headers=user.headers)).json()
    assert newest["items"][0]["reference"] == "g7"
    assert newest["items"][0]["balance_after"] == 28
    assert (await client.get("/api/v1/credits/transactions?page=9", headers=user.headers)).json()[
        "items"
    ] == []
    await assert_ledger_consistent(app)


async def test_concurrent_grants_and_adjustments_keep_the_ledger_exact(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    await grant(client, admin, user.id, 10)
    results = await asyncio.gather(*(grant(client, admin, user.id, -3) for _ in range(10)))
    assert sorted(r.status_code for r in results) == [200] * 3 + [409] * 7
    assert await balance(client, user) == 1
    await assert_ledger_consistent(app)


async def test_admin_manages_packs_and_pricing(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    created = await client.post(
        "/api/v1/admin/credits/packs",
        json={"name": "Tiny", "credits": 10, "price": "1.5"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["price"] == "1.50" and created.json()["currency"] == "usd"
    pack_id = created.json()["id"]
    assert pack_id in [p["id"] for p in (await client.get("/api/v1/credits/packs")).json()]
    hidden = await client.patch(
        f"/api/v1/admin/credits/packs/{pack_id}", json={"is_active": False}, headers=admin.headers
    )
    assert hidden.status_code == 200 and hidden.json()["is_active"] is False
    assert pack_id not in [p["id"] for p in (await client.get("/api/v1/credits/packs")).json()]
    bad = await client.post(
        "/api/v1/admin/credits/packs",
        json={"name": "Bad", "credits": 0, "price": "1.001"},
        headers=admin.headers,
    )
    assert bad.status_code == 422
    forbidden = await client.post(
        "/api/v1/admin/credits/packs",
        json={"name": "X", "credits": 1, "price": "1"},
        headers=user.headers,
    )
    assert forbidden.status_code == 403
    priced = await client.patch(
        "/api/v1/admin/credits/pricing/asin_lookup", json={"credits": 3}, headers=admin.headers
    )
    assert priced.status_code == 200 and priced.json()["credits"] == 3
    pricing = {
        p["endpoint"]: p["credits"] for p in (await client.get("/api/v1/credits/pricing")).json()
    }
    assert pricing["asin_lookup"] == 3
    unknown = await client.patch(
        "/api/v1/admin/credits/pricing/nope", json={"credits": 3}, headers=admin.headers
    )
    assert unknown.status_code == 404
    negative = await client.patch(
        "/api/v1/admin/credits/pricing/asin_lookup", json={"credits": -1}, headers=admin.headers
    )
    assert negative.status_code == 422


# --------------------------------------------------------------------------- purchases


async def _pending_purchase(app: FastAPI, user: Account, credits: int = 100) -> Payment:
    """A purchase with its payment, as the purchase route creates them."""
    async with app.state.sessionmaker() as session:
        values: dict[str, Any] = {
            "provider": "manual",
            "intent_id": f"pi_test_{user.id}_{credits}",
            "user_id": user.id,
            "amount": Decimal("9.00"),
            "currency": "usd",
            "status": "succeeded",
        }
        if hasattr(Payment, "purpose"):  # the payments domain names what a payment is for
            values["purpose"] = f"credit_purchase:test:{user.id}:{credits}"
        payment = Payment(**values)
        session.add(payment)
        await session.flush()
        purchase = await credits_service.create_purchase(
            session, user_id=user.id, pack_id=1, credits=credits
        )
        purchase.payment_id = payment.id
        await session.commit()
        return payment


async def _apply(app: FastAPI, payment: Payment, refunded: bool = False) -> bool:
    async with app.state.sessionmaker() as session:
        if refunded:
            done = await credits_service.apply_purchase_refunded(session, payment)
        else:
            done = await credits_service.apply_purchase_payment_succeeded(session, payment)
        await session.commit()
        return done


async def test_purchase_success_applied_ten_times_concurrently_credits_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    payment = await _pending_purchase(app, user)
    if is_postgres():
        results = await asyncio.gather(*(_apply(app, payment) for _ in range(10)))
    else:  # SQLite serialises writers: one session at a time
        results = [await _apply(app, payment) for _ in range(10)]
    assert results.count(True) == 1
    body = (await client.get("/api/v1/credits", headers=user.headers)).json()
    assert body == {"balance": 100, "lifetime_purchased": 100, "lifetime_spent": 0}
    entries = await ledger(app, user.id)
    assert [(e.kind, e.amount) for e in entries] == [("purchase", 100)]
    await assert_ledger_consistent(app)


async def test_refunded_purchase_takes_credits_back_never_below_zero(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    payment = await _pending_purchase(app, user)
    assert await _apply(app, payment)
    await grant(client, admin, user.id, -70, "spent most of it")
    assert await _apply(app, payment, refunded=True)
    assert not await _apply(app, payment, refunded=True)
    assert not await _apply(app, payment)  # a late success event cannot credit it again
    assert await balance(client, user) == 0
    refund = (await ledger(app, user.id))[-1]
    assert (refund.kind, refund.amount) == ("refund", -30)
    assert refund.reference is not None and "shortfall 70" in refund.reference
    async with app.state.sessionmaker() as session:
        status = await session.scalar(
            select(CreditPurchase.status).where(CreditPurchase.payment_id == payment.id)
        )
    assert status == "refunded"
    await assert_ledger_consistent(app)


async def test_partial_refunds_take_back_their_share_once_each(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    payment = await _pending_purchase(app, user)
    assert await _apply(app, payment)
    payment.refunded_amount = Decimal("3.00")  # a third of 9.00
    assert await _apply(app, payment, refunded=True)
    assert not await _apply(app, payment, refunded=True)
    assert await balance(client, user) == 67
    payment.refunded_amount = Decimal("9.00")
    assert await _apply(app, payment, refunded=True)
    assert await balance(client, user) == 0
    body = (await client.get("/api/v1/credits", headers=user.headers)).json()
    assert body["lifetime_purchased"] == 0
    assert [(e.kind, e.amount) for e in await ledger(app, user.id)] == [
        ("purchase", 100),
        ("refund", -33),
        ("refund", -67),
    ]
    await assert_ledger_consistent(app)


async def test_purchase_refunded_before_success_never_credits(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    payment = await _pending_purchase(app, user)
    assert await _apply(app, payment, refunded=True)
    assert not await _apply(app, payment)
    assert await balance(client, user) == 0
    await assert_ledger_consistent(app)


@pytest.mark.parametrize("count", [3])
async def test_grants_to_many_users_keep_each_ledger_exact(
    client: httpx.AsyncClient, make_app: AppFactory, count: int
) -> None:
    app = await make_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as other:
        admin = await register_admin(other, app)
        users = [await register(other) for _ in range(count)]
        await asyncio.gather(*(grant(other, admin, u.id, 5 + i) for i, u in enumerate(users)))
        assert [await balance(other, u) for u in users] == [5, 6, 7]
    await assert_ledger_consistent(app)


async def test_seed_gives_the_demo_user_credits_once(app: FastAPI) -> None:
    for _ in range(2):
        async with app.state.sessionmaker() as session:
            await seed(session, app.state.settings)
            await session.commit()
    async with app.state.sessionmaker() as session:
        demo = await session.scalar(select(User).where(User.email == DEMO_USER[0]))
        assert demo is not None
        summary = await credits_service.balance_of(session, demo.id)
    assert summary.balance == 100
    await assert_ledger_consistent(app)


async def test_openapi_describes_the_credit_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/credits",
        "/api/v1/credits/transactions",
        "/api/v1/credits/packs",
        "/api/v1/credits/pricing",
        "/api/v1/admin/credits/grant",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{key_id}",
    ):
        assert path in paths, path
