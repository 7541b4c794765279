"""SQL for orders: reads with their items, and status moves as conditional UPDATEs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import any_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from sellerdesk.kit.dates import DayRange, as_date, days_having, utc_day
from sellerdesk.models import Order, OrderItem, Product
from sellerdesk.models.base import utcnow

# Orders whose money was captured and not all given back: what "sold" means in the stats.
SOLD = ("paid", "shipped", "delivered")


CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class DaySales:
    """What one product sold on one UTC day (sold orders only)."""

    day: date
    product_id: int
    units: int
    revenue: Decimal


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, order_id: int) -> Order | None:
        """The order with its items, read fresh from the database."""
        return await self.session.scalar(
            select(Order)
            .where(Order.id == order_id)
            .options(selectinload(Order.items))
            .execution_options(populate_existing=True)
        )

    async def page(
        self, offset: int, limit: int, *, user_id: int | None = None, status: str | None = None
    ) -> tuple[list[Order], int]:
        """Newest first; optionally one user's or one status's."""
        where = []
        if user_id is not None:
            where.append(Order.user_id == user_id)
        if status is not None:
            where.append(Order.status == status)
        total = (
            await self.session.scalar(select(func.count()).select_from(Order).where(*where)) or 0
        )
        rows = await self.session.scalars(
            select(Order)
            .where(*where)
            .options(selectinload(Order.items))
            .order_by(Order.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return list(rows), total

    async def add(self, order: Order, items: list[OrderItem]) -> Order:
        self.session.add(order)
        await self.session.flush()
        for item in items:
            item.order_id = order.id
        self.session.add_all(items)
        await self.session.flush()
        set_committed_value(order, "items", items)  # loaded: the response needs no second query
        return order

    async def move(self, order_id: int, to: str, from_: Iterable[str], **values: Any) -> bool:
        """`status := to` only if the order is still in one of `from_`; False when it was not."""
        result = await self.session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status.in_(tuple(from_)))
            .values(status=to, updated_at=utcnow(), **values)
            .returning(Order.id)
        )
        return result.scalar_one_or_none() is not None

    async def update_shipping(self, order_id: int, values: dict[str, str]) -> None:
        """Set the carrier and/or tracking number of a shipped order."""
        await self.session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == "shipped")
            .values(updated_at=utcnow(), **values)
        )

    async def set_payment_status(
        self,
        order_id: int,
        payment_status: str,
        *,
        statuses: Iterable[str],
        payment_from: Iterable[str],
    ) -> bool:
        """Change only `payment_status`, if the order and its payment are in the given states."""
        result = await self.session.execute(
            update(Order)
            .where(
                Order.id == order_id,
                Order.status.in_(tuple(statuses)),
                Order.payment_status.in_(tuple(payment_from)),
            )
            .values(payment_status=payment_status, updated_at=utcnow())
            .returning(Order.id)
        )
        return result.scalar_one_or_none() is not None

    async def quantities(self, order_id: int) -> dict[int, int]:
        """Units per product in an order (what a cancel returns)."""
        rows = await self.session.execute(
            select(OrderItem.product_id, func.sum(OrderItem.quantity))
            .where(OrderItem.order_id == order_id)
            .group_by(OrderItem.product_id)
        )
        return {product_id: int(quantity) for product_id, quantity in rows}

    async def pending_before(self, cutoff: datetime, limit: int) -> list[int]:
        rows = await self.session.scalars(
            select(Order.id)
            .where(Order.status == "pending", Order.created_at < cutoff)
            .order_by(Order.id)
            .limit(limit)
        )
        return list(rows)

    async def placed_per_day(self, days: DayRange) -> dict[date, int]:
        """Orders placed per UTC day (any status), served by the index on `created_at`."""
        day = utc_day(Order.created_at)
        rows = await self.session.execute(
            select(day, func.count())
            .where(Order.created_at >= days.start, Order.created_at < days.end)
            .group_by(day)
        )
        return {as_date(d): int(n) for d, n in rows}

    def _in_sold_orders(self, days: DayRange) -> Any:
        """Order lines of the sold orders placed in the range (a WHERE clause)."""
        sold = (
            select(Order.id)
            .where(
                Order.created_at >= days.start,
                Order.created_at < days.end,
                Order.status.in_(SOLD),
            )
            .scalar_subquery()
        )
        # PostgreSQL: `order_id = ANY(ARRAY(SELECT ...))` probes the lines' order_id index once
        # per sold order; a join or IN would hash the whole order_item table instead.
        if self.session.get_bind().dialect.name == "postgresql":
            return OrderItem.order_id == any_(func.array(sold))
        return OrderItem.order_id.in_(sold)

    async def sales_per_product(self, days: DayRange) -> dict[int, tuple[int, Decimal]]:
        """Units and revenue per product in the sold orders placed in the range."""
        rows = await self.session.execute(
            select(
                OrderItem.product_id, func.sum(OrderItem.quantity), func.sum(OrderItem.line_total)
            )
            .where(self._in_sold_orders(days))
            .group_by(OrderItem.product_id)
        )
        return {
            int(pid): (int(units), Decimal(str(total)).quantize(CENT)) for pid, units, total in rows
        }

    async def sales_per_day(self, days: DayRange) -> list[DaySales]:
        """Units and revenue per UTC day and product in the sold orders placed in the range."""
        day = utc_day(Order.created_at)
        rows = await self.session.execute(
            select(
                day,
                OrderItem.product_id,
                func.sum(OrderItem.quantity),
                func.sum(OrderItem.line_total),
            )
            .join(Order, Order.id == OrderItem.order_id)
            .where(self._in_sold_orders(days))
            .group_by(day, OrderItem.product_id)
        )
        return [
            DaySales(as_date(d), int(pid), int(units), Decimal(str(total)).quantize(CENT))
            for d, pid, units, total in rows
        ]

    async def days_with_pending(self, days: DayRange) -> set[date]:
        """The days of the range on which an order placed is still pending (unpaid)."""
        return await days_having(self.session, Order.created_at, days, Order.status == "pending")

    async def placed_on(self, order_id: int) -> date | None:
        """The UTC day an order was placed."""
        placed = await self.session.scalar(select(Order.created_at).where(Order.id == order_id))
        return None if placed is None else placed.astimezone(UTC).date()

    async def product_names(self, product_ids: Iterable[int]) -> dict[int, str]:
        rows = await self.session.execute(
            select(Product.id, Product.name).where(Product.id.in_(tuple(product_ids)))
        )
        return {int(pid): name for pid, name in rows}
