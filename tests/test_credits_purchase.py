"""Buying credit packs end to end: purchase, confirm or webhook, credits once, refunds."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AppFactory, is_postgres
from tests.credits_factories import assert_ledger_consistent, balance, ledger
from tests.factories import Account, register, register_admin
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    charge_refunded_object,
    event,
    intent_object,
    signed,
)

PURCHASE = "/api/v1/credits/purchase"
WEBHOOK = "/api/v1/payments/webhook"


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)


async def first_pack(client: httpx.AsyncClient) -> dict[str, object]:
    packs = (await client.get("/api/v1/credits/packs")).json()
    pack: dict[str, object] = packs[0]
    return pack


async def start(client: httpx.AsyncClient, buyer: Account, **headers: str) -> httpx.Response:
    pack = await first_pack(client)
    return await client.post(
        PURCHASE, json={"pack_id": pack["id"]}, headers={**buyer.headers, **headers}
    )


async def deliver(client: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    payload, headers = signed(body)
    return await client.post(WEBHOOK, content=payload, headers=headers)


async def test_purchase_returns_an_intent_and_credits_land_only_when_paid(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    started = await start(client, buyer)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["client_secret"] and body["payment_intent_id"]
    assert body["credits"] == 100 and body["amount"] == "9.00" and body["status"] == "pending"
    assert await balance(client, buyer) == 0
    confirmed = await client.post(
        f"/api/v1/credits/purchases/{body['purchase_id']}/confirm", headers=buyer.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["purchase"]["status"] == "completed"
    assert confirmed.json()["balance"] == 100
    again = await client.post(
        f"/api/v1/credits/purchases/{body['purchase_id']}/confirm", headers=buyer.headers
    )
    assert again.status_code == 200 and again.json()["balance"] == 100
    summary = (await client.get("/api/v1/credits", headers=buyer.headers)).json()
    assert summary == {"balance": 100, "lifetime_purchased": 100, "lifetime_spent": 0}
    assert [(e.kind, e.amount) for e in await ledger(app, buyer.id)] == [("purchase", 100)]
    await assert_ledger_consistent(app)


async def test_purchase_rules(client: httpx.AsyncClient) -> None:
    buyer = await register(client)
    other = await register(client)
    assert (await client.post(PURCHASE, json={"pack_id": 1})).status_code == 401
    unknown = await client.post(PURCHASE, json={"pack_id": 999_999}, headers=buyer.headers)
    assert unknown.status_code == 404
    assert (await client.post(PURCHASE, json={}, headers=buyer.headers)).status_code == 422
    started = (await start(client, buyer)).json()
    stolen = await client.post(
        f"/api/v1/credits/purchases/{started['purchase_id']}/confirm", headers=other.headers
    )
    assert stolen.status_code == 404


async def test_idempotency_key_replays_the_same_purchase(client: httpx.AsyncClient) -> None:
    buyer = await register(client)
    first = await start(client, buyer, **{"Idempotency-Key": "buy-1"})
    second = await start(client, buyer, **{"Idempotency-Key": "buy-1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    third = await start(client, buyer)
    assert third.json()["purchase_id"] != first.json()["purchase_id"]


async def test_purchase_webhook_delivered_10_times_credits_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    intent_id = (await start(client, buyer)).json()["payment_intent_id"]
    succeeded = event("payment_intent.succeeded", intent_object(intent_id, 900))
    if is_postgres():
        responses = await asyncio.gather(*(deliver(client, succeeded) for _ in range(10)))
    else:
        responses = [await deliver(client, succeeded) for _ in range(10)]
    assert [r.status_code for r in responses] == [200] * 10
    # The same success seen again under new event ids (another path) changes nothing either.
    for _ in range(3):
        again = event("payment_intent.succeeded", intent_object(intent_id, 900))
        assert (await deliver(client, again)).status_code == 200
    assert await balance(client, buyer) == 100
    assert [(e.kind, e.amount) for e in await ledger(app, buyer.id)] == [("purchase", 100)]
    await assert_ledger_consistent(app)


async def test_refund_webhook_takes_the_credits_back_never_below_zero(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    started = (await start(client, buyer)).json()
    intent_id = started["payment_intent_id"]
    await deliver(client, event("payment_intent.succeeded", intent_object(intent_id, 900)))
    assert await balance(client, buyer) == 100
    half = await deliver(
        client, event("charge.refunded", charge_refunded_object(intent_id, 900, 450))
    )
    assert half.status_code == 200
    assert await balance(client, buyer) == 50
    full = await deliver(
        client, event("charge.refunded", charge_refunded_object(intent_id, 900, 900))
    )
    assert full.status_code == 200
    assert await balance(client, buyer) == 0
    kinds = [(e.kind, e.amount) for e in await ledger(app, buyer.id)]
    assert kinds == [("purchase", 100), ("refund", -50), ("refund", -50)]
    await assert_ledger_consistent(app)


async def test_admin_grant_with_idempotency_key_is_applied_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    body = {"user_id": user.id, "amount": 5, "reason": "goodwill"}
    headers = {**admin.headers, "Idempotency-Key": "grant-1"}
    first = await client.post("/api/v1/admin/credits/grant", json=body, headers=headers)
    second = await client.post("/api/v1/admin/credits/grant", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert await balance(client, user) == 5
    await assert_ledger_consistent(app)
