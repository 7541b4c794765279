"""The cart: lines of products and quantities, priced live; stock is checked only at checkout."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.cart.repository import CartRepository
from sellerdesk.cart.schemas import CartItemPublic, CartPublic
from sellerdesk.errors import NotFound
from sellerdesk.models import User


async def get_cart(session: AsyncSession, user: User, currency: str) -> CartPublic:
    """The cart at today's prices; lines no longer on sale are shown but not counted."""
    items = [
        CartItemPublic(
            product_id=line.product_id,
            name=line.name,
            unit_price=line.price,
            quantity=line.quantity,
            line_total=line.price * line.quantity,
            available=line.is_active,
        )
        for line in await CartRepository(session).lines(user.id)
    ]
    subtotal = sum((i.line_total for i in items if i.available), Decimal("0.00"))
    return CartPublic(items=items, subtotal=subtotal, currency=currency)


async def set_item(
    session: AsyncSession, user: User, product_id: int, quantity: int, currency: str
) -> CartPublic:
    """Set a line's quantity (adding the line if needed); unknown or inactive product → 404.

    The check and the write are one statement (the line is inserted from the product's row
    only while it is on sale)."""
    if not await CartRepository(session).set_quantity(user.id, product_id, quantity):
        raise NotFound("Product not found.")
    return await get_cart(session, user, currency)


async def remove_item(session: AsyncSession, user: User, product_id: int) -> None:
    await CartRepository(session).remove(user.id, product_id)


async def clear(session: AsyncSession, user: User) -> None:
    await CartRepository(session).clear(user.id)


async def take_all(session: AsyncSession, user_id: int) -> dict[int, int]:
    """Empty the cart for checkout: product id → quantity of every line it held."""
    return await CartRepository(session).take_all(user_id)
