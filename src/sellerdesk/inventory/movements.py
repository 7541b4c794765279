"""Recording stock movements; every change of stock goes through `record_movement`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk import events
from sellerdesk.models import Product, StockMovement

REASONS = ("order", "cancel", "expired", "adjustment", "import", "initial", "refund")


async def record_movement(
    session: AsyncSession,
    *,
    product_id: int,
    delta: int,
    stock_after: int,
    low_stock_threshold: int,
    reason: str,
    note: str | None = None,
    order_id: int | None = None,
    user_id: int | None = None,
) -> None:
    """Write the movement; emit `low_stock` when this change crossed the threshold downward."""
    if reason not in REASONS:
        raise ValueError(f"unknown stock movement reason {reason!r}")
    session.add(
        StockMovement(
            product_id=product_id,
            delta=delta,
            stock_after=stock_after,
            reason=reason,
            note=note,
            order_id=order_id,
            user_id=user_id,
        )
    )
    stock_before = stock_after - delta
    if stock_after <= low_stock_threshold < stock_before:
        names = (
            await session.execute(select(Product.sku, Product.name).where(Product.id == product_id))
        ).one()
        await events.publish(
            session,
            "low_stock",
            {
                "product_id": product_id,
                "sku": names.sku,
                "name": names.name,
                "stock": stock_after,
                "threshold": low_stock_threshold,
            },
        )
    await session.flush()
