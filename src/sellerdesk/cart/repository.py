"""SQL for cart lines."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Integer, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.db import insert_for
from sellerdesk.models import CartItem, Product
from sellerdesk.models.base import UTCDateTime, utcnow


class CartLine(NamedTuple):
    """One cart line with what the cart shows of its product."""

    product_id: int
    quantity: int
    name: str
    price: Decimal
    is_active: bool


# Built once: a request only binds its values (no statement construction or cache key per call).
_LINES = (
    select(CartItem.product_id, CartItem.quantity, Product.name, Product.price, Product.is_active)
    .join(Product, Product.id == CartItem.product_id)
    .where(CartItem.user_id == bindparam("user_id"))
    .order_by(CartItem.created_at, CartItem.product_id)
)

_TAKE_ALL = (
    delete(CartItem)
    .where(CartItem.user_id == bindparam("user_id"))
    .returning(CartItem.product_id, CartItem.quantity)
)

_SET_QUANTITY: dict[str, Any] = {}  # per dialect: PostgreSQL's and SQLite's ON CONFLICT


def _set_quantity_statement(session: AsyncSession) -> Any:
    """The cached upsert of a line for the session's dialect (`_build_set_quantity`)."""
    dialect = session.get_bind().dialect.name
    stmt = _SET_QUANTITY.get(dialect)
    if stmt is None:
        stmt = _SET_QUANTITY[dialect] = _build_set_quantity(insert_for(session, CartItem.__table__))
    return stmt


def _build_set_quantity(insert: Any) -> Any:
    """INSERT the line from the product's row only if it is on sale, or replace its quantity;
    RETURNING the product id (no row: unknown or inactive product, nothing written)."""
    on_sale = select(
        bindparam("user_id", type_=BigInteger()),
        Product.id,
        bindparam("quantity", type_=Integer()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("now", type_=UTCDateTime()),
    ).where(Product.id == bindparam("product_id"), Product.is_active.is_(True))
    # (A WHERE clause also keeps SQLite from reading ON CONFLICT as a join constraint.)
    stmt = insert.from_select(
        ["user_id", "product_id", "quantity", "created_at", "updated_at"], on_sale
    )
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "product_id"],
        set_={"quantity": stmt.excluded.quantity, "updated_at": stmt.excluded.updated_at},
    ).returning(insert.table.c.product_id)


class CartRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lines(self, user_id: int) -> list[CartLine]:
        """The user's lines, oldest first, with their products' name, price and state."""
        rows = await self.session.execute(_LINES, {"user_id": user_id})
        return [CartLine(*row) for row in rows]

    async def set_quantity(self, user_id: int, product_id: int, quantity: int) -> bool:
        """Insert the line or replace its quantity, in one statement, if the product exists and
        is on sale; False (nothing written) when it does not or is not."""
        values = {"user_id": user_id, "product_id": product_id, "quantity": quantity}
        connection = await self.session.connection()  # Core: not an ORM bulk INSERT
        result = await connection.execute(
            _set_quantity_statement(self.session), {**values, "now": utcnow()}
        )
        return result.scalar_one_or_none() is not None

    async def remove(self, user_id: int, product_id: int) -> None:
        await self.session.execute(
            delete(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id)
        )

    async def clear(self, user_id: int) -> None:
        await self.session.execute(delete(CartItem).where(CartItem.user_id == user_id))

    async def take_all(self, user_id: int) -> dict[int, int]:
        """Empty the cart and return its lines, in one statement: two checkouts of the same cart
        cannot both get it (the second waits for the first and finds it empty)."""
        rows = await self.session.execute(_TAKE_ALL, {"user_id": user_id})
        lines: dict[int, int] = {}
        for product_id, quantity in rows:
            lines[product_id] = lines.get(product_id, 0) + quantity
        return lines
