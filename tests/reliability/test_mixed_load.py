"""Mixed load with invariants: two `sellerdesk serve` processes and a Celery worker, one
database, a private Redis (cache, limits, broker), and for RELIABILITY_MIXED_SECONDS (120) a
seeded random mix of what customers and an admin do: browsing, carts, checkouts, payments
(confirmed, or paid by a signed webhook sent two or three times to either process), cancels,
refunds, credit purchases (manual gateway), paid calls (some retried under one
Idempotency-Key) and replays of earlier webhooks. Then no answer was a 5xx, every outbox event
is done, and `sellerdesk check` finds no violation.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sellerdesk.models import DomainEvent, Order, Product
from tests.reliability.harness import (
    Figures,
    Stack,
    Tally,
    buy_credits,
    cancel_order,
    check_lines,
    client,
    confirm_payment,
    place_order,
    run_mix,
    start_payment,
)
from tests.stripe_fixtures import WEBHOOK_SECRET, event, intent_object, signed

pytestmark = pytest.mark.reliability

SECONDS = float(os.environ.get("RELIABILITY_MIXED_SECONDS", "120"))
SEED = int(os.environ.get("RELIABILITY_SEED", "15005"))
CONCURRENCY = 8
USERS = 16
CREDITS = 300


@dataclass
class Shopper:
    id: int
    headers: dict[str, str]
    pending: list[dict[str, Any]] = field(default_factory=list)  # orders placed, not paid
    paid: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class World:
    servers: list[httpx.AsyncClient]
    admin: dict[str, str]
    shoppers: list[Shopper]
    products: list[int]
    asins: list[str]
    packs: list[int]
    rng: random.Random
    webhooks: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    webhook_results: Counter[str] = field(default_factory=Counter)

    def http(self) -> httpx.AsyncClient:
        return self.rng.choice(self.servers)

    def shopper(self) -> Shopper:
        return self.rng.choice(self.shoppers)

    async def send_webhook(self, t: Tally, delivery: tuple[bytes, dict[str, str]]) -> None:
        body, headers = delivery
        answer = await t.call(
            "webhook", self.http().post("/api/v1/payments/webhook", content=body, headers=headers)
        )
        if answer is not None and answer.status_code == 200:
            self.webhook_results[answer.json()["result"]] += 1

    async def pay_by_webhook(self, t: Tally, intent_id: str, amount: Decimal) -> None:
        """Stripe's `payment_intent.succeeded` for the intent, delivered 2 or 3 times at once
        (to either process), as Stripe retries do."""
        minor = int(amount * 100)
        delivery = signed(event("payment_intent.succeeded", intent_object(intent_id, minor)))
        self.webhooks.append(delivery)
        copies = self.rng.choice((2, 3))
        await asyncio.gather(*(self.send_webhook(t, delivery) for _ in range(copies)))


def operations(w: World) -> dict[str, tuple[int, Any]]:
    rng = w.rng

    async def browse(t: Tally) -> None:
        http = w.http()
        roll = rng.random()
        if roll < 0.5:
            params: dict[str, Any] = {"page": rng.randint(1, 20), "page_size": 20}
            if rng.random() < 0.3:
                params["q"] = rng.choice(["bottle", "lamp", "cable", "DEMO-0001", "zzz"])
            await t.call("browse", http.get("/api/v1/products", params=params))
        elif roll < 0.85:
            await t.call("browse", http.get(f"/api/v1/products/{rng.choice(w.products)}"))
        else:
            await t.call("browse", http.get("/api/v1/categories"))

    async def cart(t: Tally) -> None:
        s, http = w.shopper(), w.http()
        product = rng.choice(w.products)
        if rng.random() < 0.7:
            body = {"quantity": rng.randint(1, 3)}
            await t.call(
                "cart", http.put(f"/api/v1/cart/items/{product}", json=body, headers=s.headers)
            )
        else:
            await t.call("cart", http.get("/api/v1/cart", headers=s.headers))

    async def checkout(t: Tally) -> None:
        s = w.shopper()
        order = await place_order(t, w.http(), s.headers, rng.choice(w.products), rng.randint(1, 2))
        if order is not None:
            s.pending.append(order)

    async def pay(t: Tally) -> None:
        s = w.shopper()
        if not s.pending:
            return
        order = s.pending.pop(rng.randrange(len(s.pending)))
        intent = await start_payment(t, w.http(), s.headers, order["id"])
        if intent is None:
            return
        if rng.random() < 0.5:
            await confirm_payment(t, w.http(), s.headers, order["id"])
        else:
            await w.pay_by_webhook(t, intent, Decimal(order["total_amount"]))
        s.paid.append(order)

    async def cancel(t: Tally) -> None:
        s = w.shopper()
        orders = s.pending if (rng.random() < 0.5 or not s.paid) else s.paid
        if orders:
            order = orders.pop(rng.randrange(len(orders)))
            await cancel_order(t, w.http(), s.headers, order["id"])

    async def refund(t: Tally) -> None:
        s = w.shopper()
        if not s.paid:
            return
        order = rng.choice(s.paid)
        body = {"order_id": order["id"], "amount": "1.00"}
        if rng.random() < 0.3:
            body.pop("amount")  # everything not yet refunded
            s.paid.remove(order)
        await t.call("refund", w.http().post("/api/v1/payments/refund", json=body, headers=w.admin))

    async def credits(t: Tally) -> None:
        s = w.shopper()
        if rng.random() < 0.6:
            await buy_credits(t, w.http(), s.headers, rng.choice(w.packs))
            return
        key = {"Idempotency-Key": f"pack-{uuid.uuid4().hex}"}
        started = await t.call(
            "credit purchase",
            w.http().post(
                "/api/v1/credits/purchase",
                json={"pack_id": rng.choice(w.packs)},
                headers={**s.headers, **key},
            ),
        )
        if started is not None and started.status_code in (200, 201):
            body = started.json()
            await w.pay_by_webhook(t, body["payment_intent_id"], Decimal(body["amount"]))

    async def paid_call(t: Tally) -> None:
        s = w.shopper()
        body = {"asin": rng.choice(w.asins)}
        headers = dict(s.headers)
        retries = 1
        if rng.random() < 0.3:
            headers["Idempotency-Key"] = f"lookup-{uuid.uuid4().hex}"
            retries = 2  # the same key through either process: one charge
        for _ in range(retries):
            await t.call(
                "paid call", w.http().post("/api/v1/product/asin", json=body, headers=headers)
            )

    async def replay(t: Tally) -> None:
        if w.webhooks:
            await w.send_webhook(t, rng.choice(w.webhooks))

    return {
        "browse": (25, browse),
        "cart": (10, cart),
        "checkout": (8, checkout),
        "pay": (8, pay),
        "cancel": (4, cancel),
        "refund": (3, refund),
        "credits": (4, credits),
        "paid call": (15, paid_call),
        "replay webhook": (3, replay),
    }


async def test_mixed_load_on_two_processes_and_a_worker_keeps_every_invariant(
    figures: Figures,
) -> None:
    rng = random.Random(SEED)
    async with Stack.open(
        "mixed", STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, CACHE_TTL_SECONDS="30"
    ) as stack:
        assert stack.redis is not None
        stack.env["CELERY_BROKER_URL"] = stack.redis.url
        a, b = await asyncio.gather(stack.serve(), stack.serve())
        stack.start("worker", "--pool", "threads", "--concurrency", "2")
        async with stack.engine() as engine, engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Product.id, Product.asin)
                    .where(Product.is_active.is_(True), Product.stock_quantity > 0)
                    .order_by(Product.id)
                )
            ).all()
        picked = rng.sample(rows, 150)
        tally = Tally()
        async with client(a) as http_a, client(b) as http_b:
            admin = await stack.login_admin(http_a)
            shoppers = []
            for n in range(USERS):
                user_id, _, headers = await stack.user(
                    (http_a, http_b)[n % 2], credits=CREDITS, label="mixed"
                )
                shoppers.append(Shopper(user_id, headers))
            packs = [p["id"] for p in (await http_a.get("/api/v1/credits/packs")).json()]
            world = World(
                servers=[http_a, http_b],
                admin=admin,
                shoppers=shoppers,
                products=[pid for pid, _ in picked],
                asins=[asin for _, asin in picked if asin] + ["B000000000"],  # one unknown
                packs=packs,
                rng=rng,
            )
            started = time.monotonic()
            await run_mix(
                tally, operations(world), seconds=SECONDS, concurrency=CONCURRENCY, rng=rng
            )
            elapsed = time.monotonic() - started

            drain = await stack.outbox_drained()

        report = await stack.check()
        async with stack.engine() as engine, engine.connect() as conn:
            orders = dict(
                (
                    await conn.execute(select(Order.status, func.count()).group_by(Order.status))
                ).all()
            )
            events = dict(
                (
                    await conn.execute(
                        select(DomainEvent.status, func.count()).group_by(DomainEvent.status)
                    )
                ).all()
            )

    figures.add(
        f"{elapsed:.0f} s, {CONCURRENCY} loops, seed {SEED}, {USERS} users, 2 server processes "
        f"+ 1 Celery worker; {tally.requests / elapsed:.1f} requests/s"
    )
    figures.tally("requests by kind:", tally)
    figures.add(f"webhook deliveries answered: {dict(world.webhook_results)}")
    figures.add(f"orders by status: {orders}")
    figures.add(f"outbox events: {events} (all done {drain:.1f} s after the load)")
    figures.lines.extend(check_lines(report))

    assert tally.count("5") == 0, tally.server_errors
    assert tally.count("cut") == 0
    assert report["ok"], report["violations"][:20]
    assert set(events) == {"done"}
    assert world.webhook_results["duplicate"] > 0 and world.webhook_results["applied"] > 0
