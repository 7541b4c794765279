"""Money that survives slow providers, lost commits and crashes between our database and the
payment provider.

- No provider call runs inside a database transaction: on SQLite (every transaction holds the
  one write lock) a provider call that hangs does not stop another user's checkout.
- Refunds are two-phase: a `pending` row with its provider key `refund:{id}` is committed
  before the provider is called; its answer settles it `succeeded` or `failed` in a second
  transaction. A commit that fails after the provider refunded, then a retry, refunds once; a
  crash in between is settled by `settle_pending_refunds`, once.

The provider is the manual gateway behind a gate (`tests.payment_fakes.GatedProvider`), whose
memory of refunds by key is the provider's own record; the lost commit is a COMMIT that fails
once; a lease running out is simulated by backdating the claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk import jobs
from sellerdesk.models import (
    CreditPurchase,
    DomainEvent,
    Order,
    Payment,
    Refund,
)
from sellerdesk.models.base import utcnow
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import ProviderFailed
from tests.conftest import AppFactory
from tests.factories import expire_claim
from tests.orders_factories import (
    Buyer,
    checkout,
    make_product,
    make_user,
    place_order,
    put_in_cart,
    stock_of,
)
from tests.payment_fakes import GatedProvider

INTENT = "/api/v1/payments/create-payment-intent"
REFUND = "/api/v1/payments/refund"
PURCHASE = "/api/v1/credits/purchase"
SETTLE_AFTER = 300
WAIT = 10  # seconds a test waits for something that takes milliseconds when it works


def confirm_url(order_id: int) -> str:
    return f"/api/v1/payments/confirm-payment/{order_id}"


def cancel_url(order_id: int) -> str:
    return f"/api/v1/orders/{order_id}/cancel"


class World:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, provider: GatedProvider) -> None:
        self.app, self.client, self.provider = app, client, provider

    async def setup(self) -> World:
        self.admin = await make_user(self.app, admin=True)
        self.buyer = await make_user(self.app)
        return self

    async def order(self) -> int:
        product_id = await make_product(self.app, stock=5, price="10.00")
        order = await place_order(self.client, self.buyer, product_id, 3)
        return int(order["id"])

    async def start_intent(self, order_id: int) -> httpx.Response:
        """The buyer asks for the order's payment intent."""
        return await self.client.post(
            INTENT, json={"order_id": order_id}, headers=self.buyer.headers
        )

    async def paid_order(self, quantity: int = 3, product_id: int | None = None) -> int:
        """A paid order of `quantity` of a product (a new one at 10.00, stock 5, by default)."""
        product_id = product_id or await make_product(self.app, stock=5, price="10.00")
        order = await place_order(self.client, self.buyer, product_id, quantity)
        order_id = int(order["id"])
        intent = await self.start_intent(order_id)
        assert intent.status_code == 200, intent.text
        paid = await self.client.post(confirm_url(order_id), headers=self.buyer.headers)
        assert paid.status_code == 200, paid.text
        return order_id

    async def refund(
        self, order_id: int, amount: str | None = None, key: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"order_id": order_id}
        if amount is not None:
            body["amount"] = amount
        headers = {**self.admin.headers, **({"Idempotency-Key": key} if key else {})}
        return await self.client.post(REFUND, json=body, headers=headers)

    async def cancel(self, order_id: int) -> httpx.Response:
        return await self.client.post(cancel_url(order_id), headers=self.buyer.headers)

    async def settle(self, seconds_later: float = SETTLE_AFTER + 1) -> int:
        return await payments_service.settle_pending_refunds(
            self.app.state.sessionmaker,
            self.provider,
            older_than=timedelta(seconds=SETTLE_AFTER),
            now=utcnow() + timedelta(seconds=seconds_later),
        )

    async def payment(self, order_id: int) -> Payment:
        async with self.app.state.sessionmaker() as session:
            payment = await session.scalar(select(Payment).where(Payment.order_id == order_id))
            assert payment is not None
            return payment

    async def payment_by_id(self, payment_id: int | None) -> Payment:
        async with self.app.state.sessionmaker() as session:
            payment = await session.get(Payment, payment_id)
            assert payment is not None
            return payment

    async def refunds(self, order_id: int) -> list[Refund]:
        payment = await self.payment(order_id)
        async with self.app.state.sessionmaker() as session:
            rows = await session.scalars(
                select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)
            )
            return list(rows)

    async def order_row(self, order_id: int) -> Order:
        async with self.app.state.sessionmaker() as session:
            order = await session.get(Order, order_id)
            assert order is not None
            return order

    async def announced_refunds(self, order_id: int) -> int:
        async with self.app.state.sessionmaker() as session:
            rows = await session.scalars(
                select(DomainEvent).where(DomainEvent.kind == "payment_refunded")
            )
            return sum(1 for row in rows if row.payload.get("order_id") == order_id)

    async def expire_claim(self, user: Buyer, key: str) -> None:
        await expire_claim(self.app, user.id, key)

    async def count(self, model: Any, *where: Any) -> int:
        async with self.app.state.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


@pytest.fixture
async def world(make_app: AppFactory) -> AsyncIterator[World]:
    app = await make_app(REFUND_SETTLE_AFTER_SECONDS=SETTLE_AFTER)
    provider = GatedProvider(app).install()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            yield await World(app, client, provider).setup()
        finally:
            provider.uninstall()


async def cut_off(call: asyncio.Future[Any]) -> None:
    """The process dies mid-call: the request is cancelled where it waits."""
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)


# --------------------------------------------------------------------------- no lock held


@pytest.mark.parametrize(
    "slow", ["create_intent", "confirm_intent", "refund", "cancel", "credit_purchase"]
)
async def test_a_hanging_provider_call_does_not_block_another_users_checkout(
    world: World, slow: str
) -> None:
    other = await make_user(world.app)
    await put_in_cart(world.client, other, await make_product(world.app, stock=3))
    if slow in ("refund", "cancel"):
        order_id = await world.paid_order()
    else:
        order_id = await world.order()
    if slow == "confirm_intent":
        await world.client.post(INTENT, json={"order_id": order_id}, headers=world.buyer.headers)
    packs = (await world.client.get("/api/v1/credits/packs")).json()
    requests = {
        "create_intent": lambda: world.client.post(
            INTENT, json={"order_id": order_id}, headers=world.buyer.headers
        ),
        "confirm_intent": lambda: world.client.post(
            confirm_url(order_id), headers=world.buyer.headers
        ),
        "refund": lambda: world.refund(order_id, "5.00"),
        "cancel": lambda: world.cancel(order_id),
        "credit_purchase": lambda: world.client.post(
            PURCHASE, json={"pack_id": packs[0]["id"]}, headers=world.buyer.headers
        ),
    }
    operation = {"cancel": "refund", "credit_purchase": "create_intent"}.get(slow, slow)
    world.provider.hold(operation)
    call = asyncio.ensure_future(requests[slow]())
    try:
        await asyncio.wait_for(world.provider.entered.wait(), WAIT)

        placed = await asyncio.wait_for(checkout(world.client, other), WAIT)

        assert placed.status_code == 201, placed.text
        assert not call.done()  # the provider is still working on the first request
    finally:
        world.provider.release()
    answer = await asyncio.wait_for(call, WAIT)
    assert answer.status_code == 200, answer.text


# --------------------------------------------------------------------------- two-phase refunds


async def test_a_refund_is_committed_pending_with_its_provider_key_before_the_provider_call(
    world: World,
) -> None:
    order_id = await world.paid_order()
    world.provider.hold("refund")
    call = asyncio.ensure_future(world.refund(order_id, "5.00"))
    try:
        await asyncio.wait_for(world.provider.entered.wait(), WAIT)
        [row] = await world.refunds(order_id)
        payment = await world.payment(order_id)
        assert (row.status, row.amount, row.provider_key) == (
            "pending",
            Decimal("5.00"),
            f"refund:{row.id}",
        )
        assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("0"), Decimal("5"))
    finally:
        world.provider.release()

    answer = await asyncio.wait_for(call, WAIT)

    assert answer.status_code == 200, answer.text
    assert (answer.json()["id"], answer.json()["status"]) == (row.id, "succeeded")
    assert answer.json()["refunded_total"] == "5.00"
    [row] = await world.refunds(order_id)
    payment = await world.payment(order_id)
    assert row.status == "succeeded" and row.settled_at is not None
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("5"), Decimal("0"))
    assert list(world.provider.refunds_made) == [f"refund:{row.id}"]


async def test_a_refund_whose_commit_failed_after_the_provider_refunded_is_refunded_once_on_retry(
    world: World,
) -> None:
    order_id = await world.paid_order()
    world.provider.fail_commit_after("refund")

    lost = await world.refund(order_id, "5.00", key="refund-1")

    assert lost.status_code == 503, lost.text
    assert lost.json()["error"] == "service_unavailable"
    assert world.provider.refunded_total == 500  # the provider paid out
    [row] = await world.refunds(order_id)
    assert row.status == "pending"  # ... and our record of it survived the lost commit
    busy = await world.refund(order_id, "5.00", key="refund-1")
    assert busy.status_code == 409 and busy.json()["error"] == "idempotency_conflict"

    await world.expire_claim(world.admin, "refund-1")
    retry = await world.refund(order_id, "5.00", key="refund-1")
    replay = await world.refund(order_id, "5.00", key="refund-1")

    assert retry.status_code == 200, retry.text
    assert (retry.json()["id"], retry.json()["refunded_total"]) == (row.id, "5.00")
    assert replay.json() == retry.json()
    assert world.provider.refunded_total == 500
    assert list(world.provider.refunds_made) == [f"refund:{row.id}"]
    assert [(r.status, r.amount) for r in await world.refunds(order_id)] == [
        ("succeeded", Decimal("5.00"))
    ]
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("5"), Decimal("0"))
    assert (await world.order_row(order_id)).payment_status == "partially_refunded"
    assert await world.announced_refunds(order_id) == 1


async def test_a_cancel_whose_commit_failed_after_the_refund_is_finished_by_its_retry_once(
    world: World,
) -> None:
    product_id = await make_product(world.app, stock=5, price="10.00")
    order_id = await world.paid_order(3, product_id)
    world.provider.fail_commit_after("refund")

    lost = await world.cancel(order_id)

    assert lost.status_code == 503, lost.text
    assert (await world.order_row(order_id)).status == "paid"
    assert world.provider.refunded_total == 3000

    retry = await world.cancel(order_id)

    assert retry.status_code == 200, retry.text
    assert (retry.json()["status"], retry.json()["payment_status"]) == ("cancelled", "refunded")
    assert world.provider.refunded_total == 3000
    assert len(world.provider.refunds_made) == 1
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]
    assert await stock_of(world.app, product_id) == 5  # returned once
    assert await world.announced_refunds(order_id) == 1


async def test_a_refund_cut_off_after_the_provider_refunded_is_settled_by_the_job_exactly_once(
    world: World,
) -> None:
    order_id = await world.paid_order()
    world.provider.hold("refund", after=True)  # the provider refunds; its answer never arrives
    call = asyncio.ensure_future(world.refund(order_id))
    await asyncio.wait_for(world.provider.entered.wait(), WAIT)
    await cut_off(call)
    world.provider.release()
    [row] = await world.refunds(order_id)
    assert row.status == "pending"
    assert (await world.order_row(order_id)).status == "paid"

    assert await world.settle(seconds_later=0) == 0  # not older than the horizon yet
    assert await world.settle() == 1
    assert await world.settle() == 0

    [row] = await world.refunds(order_id)
    assert row.status == "succeeded"
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("30"), Decimal("0"))
    assert (await world.order_row(order_id)).status == "refunded"
    assert world.provider.calls.count("refund") == 1  # the job asked, and found it made
    assert world.provider.refunded_total == 3000
    assert await world.announced_refunds(order_id) == 1


async def test_a_refund_the_provider_never_answered_is_made_by_the_job_with_the_same_key(
    world: World,
) -> None:
    order_id = await world.paid_order()
    world.provider.fail_next("refund", ProviderFailed())  # no answer: maybe refunded, maybe not

    unknown = await world.refund(order_id, "12.00")

    assert unknown.status_code == 502 and unknown.json()["error"] == "payment_error"
    [row] = await world.refunds(order_id)
    assert row.status == "pending"
    assert unknown.json()["details"] == {
        "refund_id": row.id,
        "amount": "12.00",
        "status": "pending",
    }
    more = await world.refund(order_id, "18.01")  # the pending amount stays reserved
    assert more.status_code == 409 and more.json()["details"]["pending"] == "12.00"

    assert await world.settle() == 1

    assert list(world.provider.refunds_made) == [f"refund:{row.id}"]
    assert world.provider.refunded_total == 1200
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]
    assert (await world.order_row(order_id)).payment_status == "partially_refunded"


async def test_a_refund_the_provider_refuses_is_failed_and_its_amount_comes_back(
    world: World,
) -> None:
    order_id = await world.paid_order()
    world.provider.fail_next("refund", ProviderFailed("refused", transient=False))

    refused = await world.refund(order_id, "30.00")

    assert refused.status_code == 502 and refused.json()["error"] == "payment_error"
    [row] = await world.refunds(order_id)
    assert refused.json()["details"] == {"refund_id": row.id, "amount": "30.00", "status": "failed"}
    assert (row.status, row.settled_at is not None) == ("failed", True)
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("0"), Decimal("0"))
    assert (await world.order_row(order_id)).payment_status == "succeeded"
    assert await world.settle() == 0  # nothing left to settle
    again = await world.refund(order_id, "30.00")
    assert again.status_code == 200, again.text
    assert world.provider.refunded_total == 3000


async def test_the_job_and_a_retry_settling_one_refund_at_once_settle_it_once(
    world: World,
) -> None:
    product_id = await make_product(world.app, stock=5, price="10.00")
    order_id = await world.paid_order(2, product_id)
    world.provider.fail_commit_after("refund")
    assert (await world.cancel(order_id)).status_code == 503

    settled, retried, again = await asyncio.gather(
        world.settle(), world.cancel(order_id), world.settle()
    )

    assert retried.status_code in (200, 409), retried.text
    assert settled + again <= 1
    row = await world.order_row(order_id)
    assert (row.status, row.payment_status) == ("cancelled", "refunded")
    assert await stock_of(world.app, product_id) == 5
    assert await world.announced_refunds(order_id) == 1
    assert world.provider.refunded_total == 2000
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]


async def test_concurrent_refunds_with_one_left_pending_never_over_refund(world: World) -> None:
    order_id = await world.paid_order()  # 30.00
    world.provider.fail_next("refund", ProviderFailed())
    assert (await world.refund(order_id, "10.00")).status_code == 502  # pending, reserved

    answers = await asyncio.gather(*(world.refund(order_id, "7.00") for _ in range(4)))

    assert sorted(a.status_code for a in answers) == [200, 200, 409, 409]
    assert await world.settle() == 1
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("24"), Decimal("0"))
    assert world.provider.refunded_total == 2400
    assert (await world.order_row(order_id)).payment_status == "partially_refunded"


def test_the_settle_job_is_in_the_schedule() -> None:
    assert jobs.JOBS["settle_pending_refunds"].every_seconds == 60


# --------------------------------------------------------------------------- Idempotency-Key


async def test_an_intent_request_cut_off_before_the_provider_answered_is_resumed_by_its_retry(
    world: World,
) -> None:
    order_id = await world.order()
    headers = {**world.buyer.headers, "Idempotency-Key": "pay-1"}
    world.provider.hold("create_intent", after=True)
    call = asyncio.ensure_future(
        world.client.post(INTENT, json={"order_id": order_id}, headers=headers)
    )
    await asyncio.wait_for(world.provider.entered.wait(), WAIT)
    await cut_off(call)
    world.provider.release()
    assert (await world.payment(order_id)).intent_id is None  # recorded, not yet answered

    await world.expire_claim(world.buyer, "pay-1")
    retry = await world.client.post(INTENT, json={"order_id": order_id}, headers=headers)
    plain = await world.client.post(
        INTENT, json={"order_id": order_id}, headers=world.buyer.headers
    )

    assert retry.status_code == plain.status_code == 200, retry.text
    assert retry.json()["payment_intent_id"] == plain.json()["payment_intent_id"]
    assert retry.json()["payment_intent_id"] == (await world.payment(order_id)).intent_id
    assert await world.count(Payment) == 1


async def test_a_credit_purchase_retried_with_its_key_resumes_the_same_purchase_and_intent(
    world: World,
) -> None:
    packs = (await world.client.get("/api/v1/credits/packs")).json()
    headers = {**world.buyer.headers, "Idempotency-Key": "buy-1"}
    world.provider.fail_next("create_intent", ProviderFailed())

    failed = await world.client.post(PURCHASE, json={"pack_id": packs[0]["id"]}, headers=headers)
    other_pack = await world.client.post(
        PURCHASE, json={"pack_id": packs[1]["id"]}, headers=headers
    )
    retry = await world.client.post(PURCHASE, json={"pack_id": packs[0]["id"]}, headers=headers)
    replay = await world.client.post(PURCHASE, json={"pack_id": packs[0]["id"]}, headers=headers)

    assert failed.status_code == 502, failed.text
    # The failed attempt's purchase was kept for its key: the key cannot buy another pack.
    assert other_pack.status_code == 422 and other_pack.json()["error"] == "idempotency_conflict"
    assert retry.status_code == 200, retry.text
    assert replay.json() == retry.json()
    async with world.app.state.sessionmaker() as session:
        [purchase] = await session.scalars(
            select(CreditPurchase).where(CreditPurchase.user_id == world.buyer.id)
        )
    assert retry.json()["purchase_id"] == purchase.id
    assert (
        retry.json()["payment_intent_id"]
        == (await world.payment_by_id(purchase.payment_id)).intent_id
    )
    assert await world.count(Payment) == 1
