"""The per-day money figures behind the admin stats at the edges of their range, each written to
kill a mutant of the full mutation run that the suite let through (issue 18, docs/mutation.md).

A day range is `[first 00:00 UTC, the day after last 00:00 UTC)`: a row stamped exactly at the
start belongs to it, one stamped exactly at the end belongs to the next day. The rows are dated
in 2001, a year no other test writes, so each figure is only these rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from fastapi import FastAPI
from sqlalchemy import insert

from sellerdesk.credits.repository import LedgerRepository
from sellerdesk.kit.dates import DayRange
from sellerdesk.models import CreditLedger, Payment, Refund
from sellerdesk.payments import repository as payments_repository
from tests.orders_factories import make_user


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def test_credits_sold_per_day_count_purchases_from_the_first_instant_of_the_range_only(
    app: FastAPI,
) -> None:
    day = date(2001, 1, 1)
    start, end = midnight(day), midnight(day + timedelta(days=1))
    user = await make_user(app)
    entries = [
        ("purchase", 10, start),  # the range's first instant: counted
        ("purchase", 5, end - timedelta(microseconds=1)),  # its last: counted
        ("purchase", 100, end),  # the next day's first instant: not in this range
        ("grant", 1000, start + timedelta(hours=1)),  # not a sale
    ]
    async with app.state.sessionmaker() as session:
        await session.execute(
            insert(CreditLedger),
            [
                {
                    "user_id": user.id,
                    "amount": amount,
                    "balance_after": 0,
                    "kind": kind,
                    "created_at": at,
                }
                for kind, amount, at in entries
            ],
        )
        await session.commit()
        sold = await LedgerRepository(session).purchased_per_day(DayRange(day, day))
    assert sold == {day: 15}


async def _payment(app: FastAPI, user_id: int, currency: str, captured_at: datetime) -> int:
    async with app.state.sessionmaker() as session:
        payment = Payment(
            purpose=f"stats:edges:{uuid.uuid4().hex}",
            provider="manual",
            user_id=user_id,
            amount=Decimal("10.00"),
            currency=currency,
            status="succeeded",
            refunded_amount=Decimal("0.00"),
            captured_at=captured_at,
            created_at=captured_at,
        )
        session.add(payment)
        await session.commit()
        return payment.id


async def test_money_captured_per_day_counts_from_the_first_instant_of_the_range_only(
    app: FastAPI,
) -> None:
    day = date(2001, 1, 3)
    start, end = midnight(day), midnight(day + timedelta(days=1))
    user = await make_user(app)
    await _payment(app, user.id, "usd", start)
    await _payment(app, user.id, "usd", end)
    async with app.state.sessionmaker() as session:
        captured = await payments_repository.captured_per_day(session, DayRange(day, day), "usd")
    assert captured == {day: Decimal("10.00")}


async def test_money_refunded_per_day_counts_succeeded_refunds_of_the_currency_in_the_range(
    app: FastAPI,
) -> None:
    day = date(2001, 1, 4)
    start, end = midnight(day), midnight(day + timedelta(days=1))
    user = await make_user(app)
    usd = await _payment(app, user.id, "usd", start - timedelta(days=1))
    eur = await _payment(app, user.id, "eur", start - timedelta(days=1))
    refunds = [
        (usd, "1.00", "succeeded", start),  # counted
        (usd, "2.00", "succeeded", end - timedelta(microseconds=1)),  # counted
        (usd, "4.00", "succeeded", end),  # the next day's
        (usd, "0.50", "failed", start),  # refused: no money went back
        (eur, "0.25", "succeeded", start),  # another currency
    ]
    async with app.state.sessionmaker() as session:
        session.add_all(
            Refund(
                payment_id=payment_id,
                amount=Decimal(amount),
                status=status,
                reason="stats edges",
                created_at=at,
                settled_at=at,
            )
            for payment_id, amount, status, at in refunds
        )
        await session.commit()
        refunded = await payments_repository.refunded_per_day(session, DayRange(day, day), "usd")
    assert refunded == {day: Decimal("3.00")}
