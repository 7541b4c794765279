"""`GET /api/v1/admin/stats`: the store's figures per day, composed from the domains' own.

Orders count their orders, payments their captured and refunded money, credits the credits
sold; this module lays them side by side, one row per day of the range.

A year of live figures means aggregating every order line of the year (hundreds of
milliseconds on a busy store), so closed days are rolled up: once a UTC day has ended (plus
`ROLLUP_GRACE` for transactions still committing) and nothing of it can change any more — no
order of the day still pending, no refund of the day still in flight — the `roll_up_stats` job
writes its figures (`stats_day`) and its sales per product (`stats_day_product`). What can still
change a rolled day is a late refund or cancel of one of its sold orders; the order's event
marks the day stale (`stats_day_stale`), it is read live again, and the next run rolls it anew.
A read takes rolled days from the rollup and computes the others (today, always) live, so
every answer is as fresh as the live query; until the job has run, everything is live.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import structlog
from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk import events
from sellerdesk.auth.dependencies import AdminUser
from sellerdesk.credits import service as credits_service
from sellerdesk.db import SessionDep, insert_for
from sellerdesk.events import Event
from sellerdesk.kit.dates import DayRange, DayRangeDep, as_date
from sellerdesk.kit.money import Money, SignedMoney
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.types import OutputModel
from sellerdesk.models import RolledDay, RolledDaySales, StaleDay
from sellerdesk.models.base import utcnow
from sellerdesk.orders import service as orders_service
from sellerdesk.payments import service as payments_service

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/admin/stats", tags=["admin"])

TOP_PRODUCTS = 10
ROLLUP_DAYS = 400  # closed days the job keeps rolled up (a range reaches back 366)
ROLLUP_GRACE = timedelta(hours=1)  # a day is closed this long after it ended
CHUNK = 1_000
ZERO = Decimal("0.00")
CENT = Decimal("0.01")


class StatsDay(OutputModel):
    date: date
    orders: int = Field(description="Orders placed that day, whatever became of them.")
    revenue: SignedMoney = Field(
        description="Money captured that day (orders and credit packs) minus money refunded "
        "that day, each on its own day; may be negative."
    )
    credits_sold: int = Field(description="Credits purchased that day.")


class TopProduct(OutputModel):
    product_id: int
    name: str
    units: int
    revenue: Money


class StoreStats(OutputModel):
    """One row per day of the range (zeros included), and the best sellers of the range."""

    model_config = ConfigDict(populate_by_name=True)

    first: date = Field(alias="from")
    last: date = Field(alias="to")
    currency: str
    days: list[StatsDay]
    top_products: list[TopProduct] = Field(
        description="By revenue, from paid, shipped and delivered orders placed in the range."
    )


@dataclass(slots=True)
class DayFigures:
    orders: int = 0
    captured: Decimal = ZERO
    refunded: Decimal = ZERO
    credits_sold: int = 0


Sales = dict[int, tuple[int, Decimal]]  # product id → (units, revenue)


def _money(value: object) -> Decimal:
    return Decimal(str(value)).quantize(CENT)  # through text: SQLite hands back floats


async def _live_figures(
    session: AsyncSession, days: DayRange, currency: str
) -> dict[date, DayFigures]:
    """The figures of `days` computed from the domains' own rows."""
    figures = {day: DayFigures() for day in days.days}
    for day, placed in (await orders_service.placed_per_day(session, days)).items():
        figures[day].orders = placed
    for day, money in (await payments_service.money_per_day(session, days, currency)).items():
        figures[day].captured, figures[day].refunded = money.captured, money.refunded
    for day, sold in (await credits_service.credits_sold_per_day(session, days)).items():
        figures[day].credits_sold = sold
    return figures


def _spans(days: list[date]) -> list[DayRange]:
    """Consecutive runs of sorted `days`."""
    spans: list[DayRange] = []
    for day in days:
        if spans and spans[-1].last == day - timedelta(days=1):
            spans[-1] = DayRange(spans[-1].first, day)
        else:
            spans.append(DayRange(day, day))
    return spans


async def _rolled(session: AsyncSession, days: DayRange, currency: str) -> dict[date, DayFigures]:
    stale = select(StaleDay.day)
    rows = await session.execute(
        select(
            RolledDay.day,
            RolledDay.orders,
            RolledDay.captured,
            RolledDay.refunded,
            RolledDay.credits_sold,
        ).where(
            RolledDay.currency == currency,
            RolledDay.day >= days.first,
            RolledDay.day <= days.last,
            RolledDay.day.not_in(stale),
        )
    )
    return {
        as_date(day): DayFigures(orders, _money(captured), _money(refunded), int(credits_sold))
        for day, orders, captured, refunded, credits_sold in rows
    }


async def _rolled_sales(session: AsyncSession, days: list[date]) -> Sales:
    if not days:
        return {}
    rows = await session.execute(
        select(
            RolledDaySales.product_id,
            func.sum(RolledDaySales.units),
            func.sum(RolledDaySales.revenue),
        )
        .where(RolledDaySales.day.in_(days))
        .group_by(RolledDaySales.product_id)
    )
    return {int(pid): (int(units), Decimal(str(revenue))) for pid, units, revenue in rows}


async def store_stats(session: AsyncSession, days: DayRange, currency: str) -> StoreStats:
    """Orders, revenue and credits sold for every day of `days`, and the top products."""
    figures = await _rolled(session, days, currency)
    sales = await _rolled_sales(session, sorted(figures))
    for span in _spans([day for day in days.days if day not in figures]):
        figures.update(await _live_figures(session, span, currency))
        live_sales = await orders_service.sales_per_product(session, span)
        for product_id, (units, revenue) in live_sales.items():
            had_units, had_revenue = sales.get(product_id, (0, ZERO))
            sales[product_id] = (had_units + units, had_revenue + revenue)
    best = sorted(sales.items(), key=lambda item: (-item[1][1], item[0]))[:TOP_PRODUCTS]
    names = await orders_service.product_names(session, [product_id for product_id, _ in best])
    return StoreStats(
        first=days.first,
        last=days.last,
        currency=currency,
        days=[
            StatsDay(
                date=day,
                orders=figures[day].orders,
                revenue=(figures[day].captured - figures[day].refunded).quantize(CENT),
                credits_sold=figures[day].credits_sold,
            )
            for day in days.days
        ],
        top_products=[
            TopProduct(
                product_id=product_id,
                name=names[product_id],
                units=units,
                revenue=revenue.quantize(CENT),
            )
            for product_id, (units, revenue) in best
            if product_id in names
        ],
    )


# --------------------------------------------------------------------------- the rollup


async def roll_up_stats(
    sessionmaker: async_sessionmaker[AsyncSession], currency: str, *, until: date | None = None
) -> int:
    """Roll up the closed days (before `until`: by default today, from an hour past midnight)
    of the last `ROLLUP_DAYS` that are not rolled or are stale and can no longer change; the
    number of days written."""
    last = (until or (utcnow() - ROLLUP_GRACE).date()) - timedelta(days=1)
    window = DayRange(last - timedelta(days=ROLLUP_DAYS - 1), last)
    async with sessionmaker() as session, session.begin():
        seen: dict[date, int] = {
            day: version
            for day, version in await session.execute(select(StaleDay.day, StaleDay.version))
        }
        stale = set(seen)
        have = set(
            await session.scalars(
                select(RolledDay.day).where(
                    RolledDay.currency == currency,
                    RolledDay.day >= window.first,
                    RolledDay.day <= window.last,
                )
            )
        )
        todo = [day for day in window.days if day not in have or day in stale]
        if not todo:
            return 0
        span = DayRange(todo[0], todo[-1])
        unsettled = await orders_service.days_with_pending_orders(session, span)
        unsettled |= await payments_service.days_with_pending_refunds(session, span)
        todo = [day for day in todo if day not in unsettled]
        if not todo:
            return 0
        span = DayRange(todo[0], todo[-1])
        figures = await _live_figures(session, span, currency)
        sales: dict[date, Sales] = defaultdict(dict)
        for line in await orders_service.sales_per_day(session, span):
            sales[line.day][line.product_id] = (line.units, line.revenue)
        await session.execute(delete(RolledDay).where(RolledDay.day.in_(todo)))
        await session.execute(delete(RolledDaySales).where(RolledDaySales.day.in_(todo)))
        for day in stale.intersection(todo):  # unless marked again meanwhile
            await session.execute(
                delete(StaleDay).where(StaleDay.day == day, StaleDay.version == seen[day])
            )
        rolled_at = utcnow()
        day_rows = [
            {
                "day": day,
                "currency": currency,
                "orders": figures[day].orders,
                "captured": figures[day].captured,
                "refunded": figures[day].refunded,
                "credits_sold": figures[day].credits_sold,
                "rolled_at": rolled_at,
            }
            for day in todo
        ]
        product_rows = [
            {"day": day, "product_id": product_id, "units": units, "revenue": revenue}
            for day in todo
            for product_id, (units, revenue) in sales.get(day, {}).items()
        ]
        for start in range(0, len(day_rows), CHUNK):
            await session.execute(insert_for(session, RolledDay), day_rows[start : start + CHUNK])
        for start in range(0, len(product_rows), CHUNK):
            await session.execute(
                insert_for(session, RolledDaySales), product_rows[start : start + CHUNK]
            )
    log.info("stats_rolled_up", days=len(todo), first=str(todo[0]), last=str(todo[-1]))
    return len(todo)


async def mark_stale(session: AsyncSession, event: Event) -> None:
    """An order left the sold orders (refunded, cancelled): if its day is rolled up, the rollup
    no longer holds — read that day live until the job rolls it again. The marker is written
    in the order's own transaction, so a rollup computed while it commits is caught next run."""
    order_id = event.payload.get("order_id")
    if not isinstance(order_id, int) or event.payload.get("unpaid"):
        return  # an unpaid order sold nothing, and its day is not rolled while it is pending
    day = await orders_service.placed_on(session, order_id)
    if day is None or day >= utcnow().date():
        return  # today is always read live
    marker: Any = insert_for(session, StaleDay).values(day=day, version=1)
    await session.execute(
        marker.on_conflict_do_update(
            index_elements=[StaleDay.day], set_={"version": StaleDay.version + 1}
        )
    )


def register() -> None:
    events.on("order_refunded", mark_stale, in_transaction=True)
    events.on("order_cancelled", mark_stale, in_transaction=True)


@router.get("", response_model=StoreStats, responses=errors(401, 403, 422))
async def read_stats(
    request: Request, session: SessionDep, _: AdminUser, days: DayRangeDep
) -> StoreStats:
    """Orders, revenue and credits sold per UTC day, and the top products (default: 30 days)."""
    return await store_stats(session, days, request.app.state.settings.CURRENCY)
