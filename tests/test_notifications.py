"""Every email kind, sent in-process (no broker) to a real SMTP sink on 127.0.0.1: who gets it,
from whom, its subject and what it says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from sellerdesk.models import DomainEvent, Payment, User
from tests.conftest import AppFactory
from tests.credits_factories import grant, mount_paid_test_routes
from tests.factories import Account, register, register_admin
from tests.orders_factories import Buyer, make_product, make_user, place_order
from tests.smtp_sink import Sink, html_of, smtp_sink, text_of

__all__ = ["smtp_sink"]

EMAIL_FROM = "Sellerdesk Shop <shop@sellerdesk.test>"
INTENT = "/api/v1/payments/create-payment-intent"


@pytest.fixture
async def mail_app(make_app: AppFactory, smtp_sink: Sink) -> FastAPI:
    return mount_paid_test_routes(await make_app(**smtp_sink.settings, EMAIL_FROM=EMAIL_FROM))


@pytest.fixture
async def client(mail_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=mail_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def settle(app: FastAPI) -> None:
    """Wait for the in-process outbox tasks started by the requests so far."""
    assert await app.state.dispatcher.drain(30)


async def email_of(app: FastAPI, buyer: Buyer) -> str:
    async with app.state.sessionmaker() as session:
        email = await session.scalar(select(User.email).where(User.id == buyer.id))
    assert email is not None
    return email


async def pay(client: httpx.AsyncClient, buyer: Buyer, order_id: int) -> None:
    intent = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
    assert intent.status_code == 200, intent.text
    paid = await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=buyer.headers)
    assert paid.status_code == 200, paid.text


def only(messages: list[Any]) -> Any:
    assert len(messages) == 1, [m["Subject"] for m in messages]
    return messages[0]


# --------------------------------------------------------------------------- orders and payments


async def test_paying_an_order_sends_one_confirmation_with_the_total_and_one_receipt(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    buyer = await make_user(mail_app)
    product = await make_product(mail_app, price="23.45", stock=10, name="Fountain pen")
    order = await place_order(client, buyer, product, 2)
    await pay(client, buyer, order["id"])
    await settle(mail_app)

    to = await email_of(mail_app, buyer)
    confirmation = only(smtp_sink.of_kind("order_confirmation", to))
    assert confirmation["From"] == EMAIL_FROM
    assert confirmation["Subject"] == f"Order #{order['id']} confirmed: 46.90 USD"
    body = text_of(confirmation)
    assert f"#{order['id']}" in body and "Total: 46.90 USD" in body
    assert "2 x Fountain pen" in body and "23.45" in body
    assert "46.90" in html_of(confirmation)
    assert confirmation["Message-ID"].endswith("@sellerdesk.test>")

    receipt = only(smtp_sink.of_kind("payment_receipt", to))
    assert receipt["From"] == EMAIL_FROM
    assert receipt["Subject"] == "Payment receipt: 46.90 USD"
    assert f"order #{order['id']}" in text_of(receipt)
    async with mail_app.state.sessionmaker() as session:
        intent_id = await session.scalar(
            select(Payment.intent_id).where(Payment.order_id == order["id"])
        )
    assert intent_id and f"Payment reference: {intent_id}" in text_of(receipt)


async def test_confirming_twice_sends_the_confirmation_once(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    buyer = await make_user(mail_app)
    order = await place_order(client, buyer, await make_product(mail_app))
    await pay(client, buyer, order["id"])
    again = await client.post(
        f"/api/v1/payments/confirm-payment/{order['id']}", headers=buyer.headers
    )
    assert again.status_code == 200
    await settle(mail_app)
    assert smtp_sink.kinds() == ["order_confirmation", "payment_receipt"]


async def test_a_checkout_refused_for_stock_sends_nothing(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    await register_admin(client, mail_app)  # someone who would get a low-stock alert
    buyer = await make_user(mail_app)
    product = await make_product(mail_app, stock=1, threshold=5)
    await client.put(f"/api/v1/cart/items/{product}", json={"quantity": 2}, headers=buyer.headers)
    refused = await client.post(
        "/api/v1/orders",
        json={
            "shipping_address": {
                "name": "A",
                "line1": "1 St",
                "city": "X",
                "postal_code": "1",
                "country": "US",
            }
        },
        headers=buyer.headers,
    )
    assert refused.status_code == 409
    await settle(mail_app)
    assert smtp_sink.messages == []
    async with mail_app.state.sessionmaker() as session:
        assert list(await session.scalars(select(DomainEvent))) == []


async def test_an_admin_refund_sends_a_refund_notice(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    buyer, admin = await make_user(mail_app), await make_user(mail_app, admin=True)
    order = await place_order(client, buyer, await make_product(mail_app, price="30.00"))
    await pay(client, buyer, order["id"])
    refund = await client.post(
        "/api/v1/payments/refund",
        json={"order_id": order["id"], "amount": "10.00"},
        headers=admin.headers,
    )
    assert refund.status_code == 200, refund.text
    await settle(mail_app)
    notice = only(smtp_sink.of_kind("refund_notice", await email_of(mail_app, buyer)))
    assert notice["From"] == EMAIL_FROM
    assert notice["Subject"] == f"Refund of 10.00 USD for order #{order['id']}"
    assert "Refunded so far: 10.00 of 30.00 USD" in text_of(notice)


async def test_shipping_sends_the_carrier_and_tracking_number(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    buyer, admin = await make_user(mail_app), await make_user(mail_app, admin=True)
    order = await place_order(client, buyer, await make_product(mail_app))
    await pay(client, buyer, order["id"])
    shipped = await client.patch(
        f"/api/v1/admin/orders/{order['id']}",
        json={"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
        headers=admin.headers,
    )
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["carrier"], shipped.json()["tracking_number"]) == (
        "UPS",
        "1Z999AA10123456784",
    )
    await settle(mail_app)
    email = only(smtp_sink.of_kind("order_shipped", await email_of(mail_app, buyer)))
    assert email["Subject"] == f"Order #{order['id']} has shipped"
    assert "Carrier: UPS" in text_of(email)
    assert "Tracking number: 1Z999AA10123456784" in text_of(email)


async def test_cancelling_sends_an_order_cancelled_email(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    buyer = await make_user(mail_app)
    order = await place_order(client, buyer, await make_product(mail_app, price="12.50"))
    cancelled = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 200
    await settle(mail_app)
    email = only(smtp_sink.of_kind("order_cancelled", await email_of(mail_app, buyer)))
    assert email["From"] == EMAIL_FROM
    assert email["Subject"] == f"Order #{order['id']} cancelled"
    assert "12.50 USD" in text_of(email) and "at your request" in text_of(email)


# --------------------------------------------------------------------------- stock, credits, users


async def test_low_stock_alert_goes_to_every_active_admin_with_sku_and_name(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    admins = [await register_admin(client, mail_app) for _ in range(3)]
    async with mail_app.state.sessionmaker() as session:
        await session.execute(update(User).where(User.id == admins[2].id).values(is_active=False))
        await session.commit()
    buyer = await make_user(mail_app)
    product = await make_product(mail_app, stock=5, threshold=2, name="Blue ink")
    sku = (await client.get(f"/api/v1/products/{product}")).json()["sku"]
    await place_order(client, buyer, product, 3)
    await settle(mail_app)

    alerts = smtp_sink.of_kind("low_stock_alert")
    assert sorted(m["To"] for m in alerts) == sorted(a.email for a in admins[:2])
    for alert in alerts:
        assert alert["From"] == EMAIL_FROM
        assert alert["Subject"] == f"Low stock: {sku} Blue ink (2 left)"
        assert f"{sku} (Blue ink): 2 left, threshold 2" in text_of(alert)


async def test_buying_credits_sends_a_purchase_receipt(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    user = await register(client)
    pack = (await client.get("/api/v1/credits/packs")).json()[0]
    started = await client.post(
        "/api/v1/credits/purchase", json={"pack_id": pack["id"]}, headers=user.headers
    )
    assert started.status_code == 200, started.text
    purchase_id = started.json()["purchase_id"]
    confirmed = await client.post(
        f"/api/v1/credits/purchases/{purchase_id}/confirm", headers=user.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    await settle(mail_app)

    receipt = only(smtp_sink.of_kind("credit_purchase_receipt", user.email))
    assert receipt["From"] == EMAIL_FROM
    assert receipt["Subject"] == f"Receipt: {pack['credits']} credits"
    body = text_of(receipt)
    assert f"{pack['price']} {pack['currency'].upper()}" in body
    assert f"balance is now {pack['credits']} credits" in body
    assert smtp_sink.of_kind("payment_receipt") == []  # a credit purchase has its own receipt


async def _paid_call(client: httpx.AsyncClient, user: Account, n: int) -> None:
    response = await client.post(
        "/api/v1/test-paid/lookup", json={"code": f"CODE{n:06d}"}, headers=user.headers
    )
    assert response.status_code == 200, response.text


async def test_low_credit_warning_is_sent_once_per_crossing_of_the_users_threshold(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    admin = await register_admin(client, mail_app)
    user = await register(client)
    put = await client.put("/api/v1/credits/alerts", json={"threshold": 10}, headers=user.headers)
    assert put.status_code == 200, put.text
    assert put.json() == {
        "enabled": True,
        "threshold": 10,
        "default_threshold": None,
        "effective_threshold": 10,
    }
    await grant(client, admin, user.id, 12)
    for n in range(4):  # 12 → 8: crosses 10 once
        await _paid_call(client, user, n)
    await settle(mail_app)
    warning = only(smtp_sink.of_kind("low_credit_warning", user.email))
    assert warning["From"] == EMAIL_FROM
    assert warning["Subject"] == "Low credit balance: 10 credits left"
    assert "down to 10 credits" in text_of(warning)

    await grant(client, admin, user.id, 5)  # 13: above again, so the next crossing warns
    for n in range(4, 7):
        await _paid_call(client, user, n)
    await settle(mail_app)
    assert len(smtp_sink.of_kind("low_credit_warning", user.email)) == 2


async def test_low_credit_threshold_defaults_to_a_tenth_of_the_last_pack_and_can_be_off(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    user = await register(client)
    fresh = (await client.get("/api/v1/credits/alerts", headers=user.headers)).json()
    assert fresh == {
        "enabled": True,
        "threshold": None,
        "default_threshold": None,
        "effective_threshold": None,
    }
    pack = (await client.get("/api/v1/credits/packs")).json()[0]
    started = await client.post(
        "/api/v1/credits/purchase", json={"pack_id": pack["id"]}, headers=user.headers
    )
    await client.post(
        f"/api/v1/credits/purchases/{started.json()['purchase_id']}/confirm", headers=user.headers
    )
    after = (await client.get("/api/v1/credits/alerts", headers=user.headers)).json()
    assert after["default_threshold"] == pack["credits"] // 10
    assert after["effective_threshold"] == pack["credits"] // 10

    off = await client.put("/api/v1/credits/alerts", json={"enabled": False}, headers=user.headers)
    assert off.json()["effective_threshold"] is None
    for bad in ({"threshold": -1}, {"threshold": "ten"}, {"enabled": True, "extra": 1}):
        response = await client.put("/api/v1/credits/alerts", json=bad, headers=user.headers)
        assert response.status_code == 422
        assert response.json()["error"] == "validation_error"
    assert (await client.get("/api/v1/credits/alerts")).status_code == 401


async def test_changing_the_password_sends_a_notice(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    user = await register(client)
    changed = await client.patch(
        "/api/v1/users/me",
        json={"password": "a-brand-new-password", "current_password": user.password},
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text
    await settle(mail_app)
    notice = only(smtp_sink.of_kind("password_changed", user.email))
    assert notice["From"] == EMAIL_FROM
    assert notice["Subject"] == "Your sellerdesk password was changed"
    assert "If this was not you" in text_of(notice)
    assert "a-brand-new-password" not in text_of(notice)
