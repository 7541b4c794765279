"""`GET /api/v1/admin/stats`: the store's figures per day, composed from the domains' own.

Orders count their orders, payments their captured and refunded money, credits the credits
sold; this module only lays them side by side, one row per day of the range.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.auth.dependencies import AdminUser
from sellerdesk.credits import service as credits_service
from sellerdesk.db import SessionDep
from sellerdesk.kit.dates import DayRange, DayRangeDep
from sellerdesk.kit.money import Money, SignedMoney
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.types import OutputModel
from sellerdesk.orders import service as orders_service
from sellerdesk.payments import service as payments_service

router = APIRouter(prefix="/admin/stats", tags=["admin"])

TOP_PRODUCTS = 10


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


async def store_stats(session: AsyncSession, days: DayRange, currency: str) -> StoreStats:
    """Orders, revenue and credits sold for every day of `days`, and the top products."""
    orders = await orders_service.placed_per_day(session, days)
    money = await payments_service.money_per_day(session, days, currency)
    credits = await credits_service.credits_sold_per_day(session, days)
    top = await orders_service.top_products(session, days, TOP_PRODUCTS)
    zero = Decimal("0.00")
    return StoreStats(
        first=days.first,
        last=days.last,
        currency=currency,
        days=[
            StatsDay(
                date=day,
                orders=orders.get(day, 0),
                revenue=money[day].net if day in money else zero,
                credits_sold=credits.get(day, 0),
            )
            for day in days.days
        ],
        top_products=[
            TopProduct(product_id=p.product_id, name=p.name, units=p.units, revenue=p.revenue)
            for p in top
        ],
    )


@router.get("", response_model=StoreStats, responses=errors(401, 403, 422))
async def read_stats(
    request: Request, session: SessionDep, _: AdminUser, days: DayRangeDep
) -> StoreStats:
    """Orders, revenue and credits sold per UTC day, and the top products (default: 30 days)."""
    return await store_stats(session, days, request.app.state.settings.CURRENCY)
