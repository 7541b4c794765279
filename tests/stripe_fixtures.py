"""Payment test helpers: localstripe on loopback, signed Stripe events, orders to pay for."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.models import DomainEvent, Order, OrderItem, Payment, Product, WebhookEvent

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
_seq = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def localstripe() -> Iterator[str]:
    """localstripe on 127.0.0.1 (free port, store in a temp dir); yields its base URL."""
    port = free_port()
    store = tempfile.mkdtemp(prefix="localstripe-")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.localstripe_server", str(port), store],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate()
                pytest.fail(f"localstripe did not start: {err.decode()[-2000:]}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def stripe_settings(base_url: str) -> dict[str, Any]:
    """Settings overrides for an app that uses Stripe through localstripe.

    Each app gets its own secret key, as if it were its own Stripe account: idempotency keys
    (`order:1:payment_intent`) are remembered per account, and SQLite reuses ids after each
    test's reset while localstripe lives for the whole session."""
    return {
        "PAYMENT_PROVIDER": "stripe",
        "STRIPE_SECRET_KEY": f"sk_test_sellerdesk_{uuid.uuid4().hex[:12]}",
        "STRIPE_API_BASE": base_url,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def stripe_client(base_url: str, http: stripe.HTTPXClient) -> stripe.StripeClient:
    """The SDK as a browser's Stripe.js would act (attach a card, confirm)."""
    return stripe.StripeClient(
        "sk_test_sellerdesk",
        base_addresses={"api": base_url},
        max_network_retries=0,
        http_client=http,
    )


# --------------------------------------------------------------------------- events


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{next(_seq)}_{time.time_ns()}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def intent_object(
    intent_id: str, amount: int, status: str = "succeeded", currency: str = "usd"
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "status": status,
    }
    if status == "requires_payment_method":
        obj["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
    return obj


def charge_refunded_object(intent_id: str, amount: int, refunded: int) -> dict[str, Any]:
    return {
        "id": f"ch_test_{next(_seq)}",
        "object": "charge",
        "payment_intent": intent_id,
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "currency": "usd",
        "paid": True,
        "status": "succeeded",
        "refunded": refunded >= amount,
    }


def signed(
    body: dict[str, Any] | str,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers Stripe would send, signed with the SDK's own helper."""
    payload = body if isinstance(body, str) else json.dumps(body)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}


# --------------------------------------------------------------------------- data


async def make_product(app: FastAPI, price: str = "25.00", stock: int = 10) -> int:
    n = next(_seq)
    async with app.state.sessionmaker() as session:
        product = Product(
            name=f"Widget {n}",
            price=Decimal(price),
            currency="usd",
            stock_quantity=stock,
            sku=f"PAY-{n}-{time.time_ns()}",
            images=[],
        )
        session.add(product)
        await session.commit()
        return product.id


async def make_order(app: FastAPI, user_id: int, total: str = "50.00") -> int:
    """A pending order of one product line (as checkout would leave it), straight in the DB."""
    product_id = await make_product(app, price=total)
    async with app.state.sessionmaker() as session:
        order = Order(
            user_id=user_id,
            status="pending",
            payment_status="pending",
            total_amount=Decimal(total),
            currency="usd",
            shipping_address={
                "name": "Ada",
                "line1": "1 Main St",
                "city": "Springfield",
                "postal_code": "12345",
                "country": "US",
            },
        )
        session.add(order)
        await session.flush()
        session.add(
            OrderItem(
                order_id=order.id,
                product_id=product_id,
                name="Widget",
                sku="W",
                quantity=1,
                unit_price=Decimal(total),
                line_total=Decimal(total),
            )
        )
        await session.commit()
        return order.id


async def payment_of(app: FastAPI, order_id: int) -> Payment | None:
    async with app.state.sessionmaker() as session:
        stmt = select(Payment).where(Payment.order_id == order_id)
        return (await session.execute(stmt)).scalar_one_or_none()


async def order_row(app: FastAPI, order_id: int) -> Order:
    async with app.state.sessionmaker() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        return order


async def count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.sessionmaker() as session:
        stmt = select(func.count()).select_from(model).where(*where)
        return int((await session.execute(stmt)).scalar_one())


async def order_paid_events(app: FastAPI, order_id: int) -> int:
    async with app.state.sessionmaker() as session:
        rows = (
            await session.execute(select(DomainEvent).where(DomainEvent.kind == "order_paid"))
        ).scalars()
        return sum(1 for row in rows if row.payload.get("order_id") == order_id)


async def webhook_events(app: FastAPI) -> int:
    return await count(app, WebhookEvent)


async def gather(*aws: Any) -> list[Any]:
    return list(await asyncio.gather(*aws))
