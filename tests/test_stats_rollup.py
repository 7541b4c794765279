"""The admin stats' rollup of closed days: a rolled day answers exactly what the live query
answers, a day that can still change is not rolled, and a late refund of a rolled day's order
is seen at once (the day is read live again until the job rolls it anew)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update

from sellerdesk import admin_stats
from sellerdesk.models import (
    CreditLedger,
    Order,
    Payment,
    Refund,
    RolledDay,
    RolledDaySales,
    StaleDay,
)
from tests.factories import register, register_admin
from tests.test_analytics import STATS, buy, buy_pack, create_product, day_of, refund, today


async def back_date(app: FastAPI, order_id: int, days: int) -> None:
    """Move an order, its payment and its refunds `days` back (as if made then)."""
    then = datetime.now(UTC) - timedelta(days=days)
    async with app.state.sessionmaker() as session:
        await session.execute(update(Order).where(Order.id == order_id).values(created_at=then))
        payment_ids = select(Payment.id).where(Payment.order_id == order_id)
        await session.execute(
            update(Payment)
            .where(Payment.order_id == order_id, Payment.captured_at.is_not(None))
            .values(captured_at=then)
        )
        await session.execute(
            update(Refund).where(Refund.payment_id.in_(payment_ids)).values(created_at=then)
        )
        await session.commit()


async def back_date_purchases(app: FastAPI, days: int) -> None:
    then = datetime.now(UTC) - timedelta(days=days)
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(CreditLedger).where(CreditLedger.kind == "purchase").values(created_at=then)
        )
        await session.execute(
            update(Payment).where(Payment.order_id.is_(None)).values(captured_at=then)
        )
        await session.commit()


async def stats(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(STATS, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def rolled_days(app: FastAPI) -> set[Any]:
    async with app.state.sessionmaker() as session:
        return set(await session.scalars(select(RolledDay.day)))


async def forget_rollup(app: FastAPI) -> None:
    async with app.state.sessionmaker() as session:
        for table in (RolledDay, RolledDaySales, StaleDay):
            await session.execute(delete(table))
        await session.commit()


async def test_rolled_days_answer_exactly_what_the_live_query_answers(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    dear = await create_product(client, admin, "10.00")
    cheap = await create_product(client, admin, "3.00")
    first = await buy(client, buyer, dear["id"], 2)
    await refund(client, admin, first["id"], "4.00")
    second = await buy(client, buyer, cheap["id"], 5)
    unpaid = await buy(client, buyer, dear["id"], 1, pay=False)
    await buy_pack(client, buyer)
    await buy(client, buyer, cheap["id"], 1)  # today's: always live
    await back_date(app, first["id"], 5)
    await back_date(app, second["id"], 3)
    await back_date(app, unpaid["id"], 2)
    await back_date_purchases(app, 3)
    live = await stats(client, admin.headers)

    written = await admin_stats.roll_up_stats(app.state.sessionmaker, "usd")

    assert written >= 3
    rolled = await rolled_days(app)
    day = today()
    assert {day - timedelta(days=5), day - timedelta(days=3)} <= rolled
    assert day - timedelta(days=2) not in rolled  # an order of that day is still pending
    assert day not in rolled
    assert await stats(client, admin.headers) == live
    assert day_of(live, day - timedelta(days=5))["revenue"] == "16.00"  # 20.00 - 4.00
    assert [p["product_id"] for p in live["top_products"]] == [dear["id"], cheap["id"]]
    assert await admin_stats.roll_up_stats(app.state.sessionmaker, "usd") == 0  # all done


async def test_a_day_with_a_refund_in_flight_waits_to_be_rolled(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    product = await create_product(client, admin, "8.00")
    order = await buy(client, buyer, product["id"], 1)
    await refund(client, admin, order["id"], "2.00")
    await back_date(app, order["id"], 4)
    async with app.state.sessionmaker() as session:  # as if its provider had not answered yet
        await session.execute(update(Refund).values(status="pending", settled_at=None))
        await session.commit()

    await admin_stats.roll_up_stats(app.state.sessionmaker, "usd")

    assert today() - timedelta(days=4) not in await rolled_days(app)


async def test_a_late_refund_of_a_rolled_days_order_is_seen_at_once_then_rolled_again(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    kept = await create_product(client, admin, "5.00")
    returned = await create_product(client, admin, "50.00")
    await back_date(app, (await buy(client, buyer, kept["id"], 1))["id"], 6)
    late = await buy(client, buyer, returned["id"], 1)
    await back_date(app, late["id"], 6)
    await admin_stats.roll_up_stats(app.state.sessionmaker, "usd")
    before = await stats(client, admin.headers)
    assert [p["product_id"] for p in before["top_products"]] == [returned["id"], kept["id"]]

    await refund(client, admin, late["id"])  # in full, today: the order no longer sold anything

    after = await stats(client, admin.headers)
    assert [p["product_id"] for p in after["top_products"]] == [kept["id"]]
    six_days_ago = today() - timedelta(days=6)
    assert day_of(after, six_days_ago) == day_of(before, six_days_ago)  # still placed and paid
    assert day_of(after, today())["revenue"] == "-50.00"  # the refund, on its own day
    await forget_rollup(app)
    assert await stats(client, admin.headers) == after  # what the live query says

    await admin_stats.roll_up_stats(app.state.sessionmaker, "usd")
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(StaleDay)) == 0
    assert six_days_ago in await rolled_days(app)
    assert await stats(client, admin.headers) == after


@pytest.mark.postgres_only  # SQLite runs one writer at a time: no refund commits meanwhile
async def test_a_day_marked_again_while_it_was_rolled_stays_stale(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The job drops a stale marker only at the version it read: a refund that commits while it
    computes leaves the day marked, to be read live and rolled again next run."""
    admin = await register_admin(client, app)
    buyer = await register(client)
    product = await create_product(client, admin, "7.00")
    order = await buy(client, buyer, product["id"], 1)
    await back_date(app, order["id"], 3)
    day = today() - timedelta(days=3)
    async with app.state.sessionmaker() as session:
        session.add(StaleDay(day=day, version=1))
        await session.commit()
    original = admin_stats.orders_service.sales_per_day

    async def sales_then_a_late_mark(*args: Any) -> Any:
        sales = await original(*args)
        async with app.state.sessionmaker() as other:  # another request marks the day again
            await other.execute(update(StaleDay).values(version=StaleDay.version + 1))
            await other.commit()
        return sales

    admin_stats.orders_service.sales_per_day = sales_then_a_late_mark  # type: ignore[assignment]
    try:
        await admin_stats.roll_up_stats(app.state.sessionmaker, "usd")
    finally:
        admin_stats.orders_service.sales_per_day = original  # type: ignore[assignment]

    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(StaleDay.version).where(StaleDay.day == day)) == 2
