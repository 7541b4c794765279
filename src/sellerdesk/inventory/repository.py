"""SQL for stock levels and their movements; every change is one conditional statement."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import BigInteger, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.models import Product, StockMovement

MAX_STOCK = 2**31 - 1  # stock_quantity is a 32-bit INTEGER


@dataclass(frozen=True, slots=True)
class StockLevel:
    """A product's row as a stock change left it (what the order snapshots, too)."""

    product_id: int
    stock_quantity: int
    low_stock_threshold: int
    name: str
    sku: str
    price: Decimal
    currency: str


_RETURNING = (
    Product.id,
    Product.stock_quantity,
    Product.low_stock_threshold,
    Product.name,
    Product.sku,
    Product.price,
    Product.currency,
)


class StockRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def take(self, product_id: int, quantity: int) -> StockLevel | None:
        """Take `quantity` of an active product if that much is left; None when it is not."""
        row = (
            await self.session.execute(
                update(Product)
                .where(
                    Product.id == product_id,
                    Product.stock_quantity >= quantity,
                    Product.is_active.is_(True),
                )
                .values(stock_quantity=Product.stock_quantity - quantity)
                .returning(*_RETURNING)
            )
        ).one_or_none()
        return StockLevel(*row) if row is not None else None

    async def change(self, product_id: int, delta: int) -> StockLevel | None:
        """Add `delta` (may be negative) unless stock would leave 0..MAX_STOCK; None then or if
        the product is absent."""
        # Compared as BIGINT so that a huge delta cannot overflow the INTEGER column mid-check.
        after = cast(Product.stock_quantity, BigInteger) + delta
        row = (
            await self.session.execute(
                update(Product)
                .where(Product.id == product_id, after >= 0, after <= MAX_STOCK)
                .values(stock_quantity=Product.stock_quantity + delta)
                .returning(*_RETURNING)
            )
        ).one_or_none()
        return StockLevel(*row) if row is not None else None

    async def available(self, product_ids: list[int]) -> dict[int, int]:
        """What is on sale now: stock of active products (inactive and missing count as 0)."""
        rows = await self.session.execute(
            select(Product.id, Product.stock_quantity).where(
                Product.id.in_(product_ids), Product.is_active.is_(True)
            )
        )
        found = {product_id: stock for product_id, stock in rows}
        return {product_id: found.get(product_id, 0) for product_id in product_ids}

    async def exists(self, product_id: int) -> bool:
        return (
            await self.session.scalar(select(Product.id).where(Product.id == product_id))
        ) is not None

    async def movements(
        self, product_id: int, offset: int, limit: int
    ) -> tuple[list[StockMovement], int]:
        where = StockMovement.product_id == product_id
        total = await self.session.scalar(select(func.count()).where(where)) or 0
        rows = await self.session.scalars(
            select(StockMovement)
            .where(where)
            .order_by(StockMovement.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return list(rows), total

    async def low_stock(self, offset: int, limit: int) -> tuple[list[Product], int]:
        where = (Product.stock_quantity <= Product.low_stock_threshold, Product.is_active.is_(True))
        total = (
            await self.session.scalar(select(func.count()).select_from(Product).where(*where)) or 0
        )
        rows = await self.session.scalars(
            select(Product)
            .where(*where)
            .order_by(Product.stock_quantity, Product.id)
            .offset(offset)
            .limit(limit)
        )
        return list(rows), total
