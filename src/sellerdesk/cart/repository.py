"""SQL for cart lines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.db import insert_for
from sellerdesk.models import CartItem, Product
from sellerdesk.models.base import utcnow


class CartRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lines(self, user_id: int) -> list[tuple[CartItem, Product]]:
        rows = await self.session.execute(
            select(CartItem, Product)
            .join(Product, Product.id == CartItem.product_id)
            .where(CartItem.user_id == user_id)
            .order_by(CartItem.created_at, CartItem.product_id)
        )
        return [(item, product) for item, product in rows]

    async def set_quantity(self, user_id: int, product_id: int, quantity: int) -> None:
        """Insert the line or replace its quantity, in one statement."""
        now = utcnow()
        stmt: Any = insert_for(self.session, CartItem).values(
            user_id=user_id,
            product_id=product_id,
            quantity=quantity,
            created_at=now,
            updated_at=now,
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["user_id", "product_id"],
                set_={"quantity": stmt.excluded.quantity, "updated_at": now},
            )
        )

    async def remove(self, user_id: int, product_id: int) -> None:
        await self.session.execute(
            delete(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id)
        )

    async def clear(self, user_id: int) -> None:
        await self.session.execute(delete(CartItem).where(CartItem.user_id == user_id))

    async def take_all(self, user_id: int) -> dict[int, int]:
        """Empty the cart and return its lines, in one statement: two checkouts of the same cart
        cannot both get it (the second waits for the first and finds it empty)."""
        rows = await self.session.execute(
            delete(CartItem)
            .where(CartItem.user_id == user_id)
            .returning(CartItem.product_id, CartItem.quantity)
        )
        lines: dict[int, int] = {}
        for product_id, quantity in rows:
            lines[product_id] = lines.get(product_id, 0) + quantity
        return lines

    async def active_product(self, product_id: int) -> Product | None:
        return await self.session.scalar(
            select(Product).where(Product.id == product_id, Product.is_active.is_(True))
        )
