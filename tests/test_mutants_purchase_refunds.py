"""Refunds of credit purchases, each written to kill a mutant of the full mutation run that the
suite let through (issue 18, docs/mutation.md): a purchase refunded before it was credited, the
share of a pack costing one unit, a refund after every credit was spent, the purchase row as it
is now when it is locked, and a refund of a payment that is no purchase's.

The purchases are started over HTTP (a real pack, a real pending payment); the moves that the
webhook path only reaches in an unlucky order of events are driven through the service, as the
purchase handlers call it.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from sellerdesk.credits import service as credits_service
from sellerdesk.credits.handlers import _Payment
from sellerdesk.credits.repository import PurchaseRepository
from sellerdesk.models import CreditPurchase, Payment
from tests.conftest import AppFactory
from tests.credits_factories import assert_ledger_consistent, balance, ledger
from tests.stripe_fixtures import WEBHOOK_SECRET, charge_refunded_object, event, intent_object
from tests.test_money_guards import buy_a_pack, deliver, purchase_status


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)


async def payment_of(app: FastAPI, purchase_id: int, refunded: str = "0.00") -> _Payment:
    """The purchase's payment as the purchase handlers see it, `refunded` of it refunded."""
    async with app.state.sessionmaker() as session:
        payment = await session.scalar(
            select(Payment)
            .join(CreditPurchase, CreditPurchase.payment_id == Payment.id)
            .where(CreditPurchase.id == purchase_id)
        )
        assert payment is not None
        return _Payment(payment.id, payment.amount, Decimal(refunded), payment.currency)


async def test_a_partial_refund_of_a_pack_costing_one_unit_takes_back_only_its_share(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer, started = await buy_a_pack(client, app, 10, "1.00")
    intent_id, currency = started["payment_intent_id"], started["currency"]
    paid = intent_object(intent_id, 100, currency=currency)
    await deliver(client, event("payment_intent.succeeded", paid))
    assert await balance(client, buyer) == 10

    # 0.40 of 1.00 refunded: 4 of the 10 credits go back, not all of them.
    partial = {**charge_refunded_object(intent_id, 100, 40), "currency": currency}
    await deliver(client, event("charge.refunded", partial))
    assert await balance(client, buyer) == 6
    entries = await ledger(app, buyer.id)
    assert [(e.kind, e.amount) for e in entries] == [("purchase", 10), ("refund", -4)]
    # Nothing was spent, so no shortfall; the refund lands once per refunded total.
    purchase_id = started["purchase_id"]
    assert entries[1].reference == f"refund of purchase:{purchase_id}"
    assert entries[1].idempotency_key == f"purchase_refund:{purchase_id}:4"
    await assert_ledger_consistent(app)


async def test_a_refund_after_every_credit_was_spent_takes_nothing_and_records_the_shortfall(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer, started = await buy_a_pack(client, app, 10, "2.00")
    payment = await payment_of(app, started["purchase_id"])
    async with app.state.sessionmaker() as session:
        assert await credits_service.apply_purchase_payment_succeeded(session, payment)
        await credits_service.grant(
            session, user_id=buyer.id, amount=-10, reason="spent on lookups", admin_id=buyer.id
        )
        await session.commit()
    assert await balance(client, buyer) == 0

    refunded = await payment_of(app, started["purchase_id"], refunded="2.00")
    async with app.state.sessionmaker() as session:
        assert await credits_service.apply_purchase_refunded(session, refunded)
        await session.commit()
    assert await balance(client, buyer) == 0
    taken_back = (await ledger(app, buyer.id))[-1]
    assert (taken_back.kind, taken_back.amount) == ("refund", 0)
    assert taken_back.reference == (
        f"refund of purchase:{started['purchase_id']}; shortfall 10 credits already spent"
    )
    assert await purchase_status(app, started["purchase_id"]) == "refunded"
    await assert_ledger_consistent(app)


@pytest.mark.parametrize("declined_first", [False, True], ids=["pending", "failed"])
async def test_a_purchase_refunded_before_it_was_credited_is_never_credited(
    client: httpx.AsyncClient, app: FastAPI, declined_first: bool
) -> None:
    buyer, started = await buy_a_pack(client, app, 50, "5.00")
    purchase_id = started["purchase_id"]
    if declined_first:
        declined = intent_object(
            started["payment_intent_id"],
            500,
            status="requires_payment_method",
            currency=started["currency"],
        )
        await deliver(client, event("payment_intent.payment_failed", declined))
        assert await purchase_status(app, purchase_id) == "failed"

    refunded = await payment_of(app, purchase_id, refunded="5.00")
    async with app.state.sessionmaker() as session:
        assert await credits_service.apply_purchase_refunded(session, refunded) is True
        await session.commit()
    assert await purchase_status(app, purchase_id) == "refunded"

    # The success that arrives after the refund credits nothing.
    async with app.state.sessionmaker() as session:
        assert await credits_service.apply_purchase_payment_succeeded(session, refunded) is False
        await session.commit()
    assert await purchase_status(app, purchase_id) == "refunded"
    assert await balance(client, buyer) == 0
    assert await ledger(app, buyer.id) == []


async def test_a_refund_of_a_payment_of_no_purchase_changes_nothing(app: FastAPI) -> None:
    stranger = _Payment(
        id=987_655, amount=Decimal("9.00"), refunded_amount=Decimal("9.00"), currency="usd"
    )
    async with app.state.sessionmaker() as session:
        assert await credits_service.apply_purchase_refunded(session, stranger) is False


async def test_locking_a_purchase_reads_it_as_stored_even_when_the_session_holds_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, started = await buy_a_pack(client, app, 10, "1.00")
    purchase_id = started["purchase_id"]
    async with app.state.sessionmaker() as session:
        purchases = PurchaseRepository(session)
        held = await purchases.by_payment((await payment_of(app, purchase_id)).id)
        assert held is not None and (held.credits_refunded, held.status) == (0, "pending")
        await purchases.record_refund(purchase_id, 4, "completed")  # an UPDATE, no ORM sync
        locked = await purchases.lock(purchase_id)
        assert locked is not None
        assert (locked.credits_refunded, locked.status) == (4, "completed")
