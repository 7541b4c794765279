"""Stock rules: take and return stock for orders, admin adjustments, history and low stock.

Every change is a conditional UPDATE plus a `stock_movement` row (via `record_movement`), and
queues a catalog cache purge for after the commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.db import on_commit
from sellerdesk.errors import AppError, Conflict, NotFound
from sellerdesk.inventory.movements import record_movement
from sellerdesk.inventory.repository import MAX_STOCK, StockLevel, StockRepository
from sellerdesk.kit.cache import Cache
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import Product, StockMovement, User

CATALOG_NAMESPACE = "catalog"


class InsufficientStock(AppError):
    status_code = 409
    code = "insufficient_stock"
    message = "Some items are not available in the requested quantity."

    def __init__(self, shortages: list[dict[str, int]]) -> None:
        super().__init__(details=shortages)


async def invalidate_catalog(session: AsyncSession, cache: Cache) -> None:
    """Purge cached catalog pages once `session` commits (the catalog service's own will replace
    this: `catalog.service.invalidate_catalog(session, cache)`)."""

    async def invalidate_catalog_cache() -> None:
        await cache.invalidate(CATALOG_NAMESPACE)

    on_commit(session, invalidate_catalog_cache)


async def take_for_order(session: AsyncSession, lines: Mapping[int, int]) -> list[StockLevel]:
    """Take every line's quantity, in product-id order (no deadlocks between carts); if any line
    is short, raise `InsufficientStock` naming all of them, so the transaction rolls back."""
    repo = StockRepository(session)
    taken: list[StockLevel] = []
    short: list[int] = []
    for product_id in sorted(lines):
        level = await repo.take(product_id, lines[product_id])
        if level is None:
            short.append(product_id)
        else:
            taken.append(level)
    if short:
        available = await repo.available(short)
        raise InsufficientStock(
            [{"product_id": p, "requested": lines[p], "available": available[p]} for p in short]
        )
    return taken


async def record_order_movements(
    session: AsyncSession,
    levels: Iterable[StockLevel],
    lines: Mapping[int, int],
    *,
    order_id: int,
    user_id: int,
) -> None:
    for level in levels:
        await record_movement(
            session,
            product_id=level.product_id,
            delta=-lines[level.product_id],
            stock_after=level.stock_quantity,
            low_stock_threshold=level.low_stock_threshold,
            reason="order",
            order_id=order_id,
            user_id=user_id,
        )


async def return_for_order(
    session: AsyncSession,
    lines: Mapping[int, int],
    *,
    order_id: int,
    reason: str,
    user_id: int | None,
) -> None:
    """Put an order's stock back (cancel, expiry, refund-cancel), with a movement per line."""
    repo = StockRepository(session)
    for product_id in sorted(lines):
        level = await repo.change(product_id, lines[product_id])
        if level is None:
            continue  # the product row is gone; nothing to return to
        await record_movement(
            session,
            product_id=product_id,
            delta=lines[product_id],
            stock_after=level.stock_quantity,
            low_stock_threshold=level.low_stock_threshold,
            reason=reason,
            order_id=order_id,
            user_id=user_id,
        )


async def adjust(
    session: AsyncSession, cache: Cache, admin: User, product_id: int, delta: int, reason: str
) -> StockLevel:
    """Add or remove stock by hand; never below 0 (409)."""
    repo = StockRepository(session)
    level = await repo.change(product_id, delta)
    if level is None:
        if not await repo.exists(product_id):
            raise NotFound("Product not found.")
        available = await repo.available([product_id])
        raise Conflict(
            "Stock cannot go below 0." if delta < 0 else f"Stock cannot exceed {MAX_STOCK}.",
            details={"product_id": product_id, "delta": delta, "available": available[product_id]},
        )
    await record_movement(
        session,
        product_id=product_id,
        delta=delta,
        stock_after=level.stock_quantity,
        low_stock_threshold=level.low_stock_threshold,
        reason="adjustment",
        note=reason,
        user_id=admin.id,
    )
    await invalidate_catalog(session, cache)
    return level


async def movements(
    session: AsyncSession, product_id: int, params: PageParams
) -> tuple[list[StockMovement], int]:
    repo = StockRepository(session)
    if not await repo.exists(product_id):
        raise NotFound("Product not found.")
    return await repo.movements(product_id, params.offset, params.page_size)


async def low_stock(session: AsyncSession, params: PageParams) -> tuple[list[Product], int]:
    return await StockRepository(session).low_stock(params.offset, params.page_size)
