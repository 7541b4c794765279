"""Packs and prices: data in the database, editable by admins, prices cached per process."""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.credits.repository import CatalogRepository
from sellerdesk.db import on_commit
from sellerdesk.errors import NotFound
from sellerdesk.models import CreditPack, CreditPrice

log = structlog.get_logger(__name__)

ASIN_LOOKUP = "asin_lookup"
FNSKU_CONVERSION = "fnsku_conversion"
DEFAULT_PRICES = {ASIN_LOOKUP: 1, FNSKU_CONVERSION: 1}
"""Used only if a price row is missing; the migration inserts these rows."""

PRICE_CACHE_SECONDS = 5.0


class PriceBook:
    """Prices of the paid endpoints, read at most every few seconds per process.

    A paid call is on the hot path, so the price is not read from the database each time. A
    change made through this process is seen at once; other processes see it within
    `PRICE_CACHE_SECONDS`.
    """

    def __init__(self) -> None:
        self._prices: dict[str, int] = {}
        self._loaded_at = float("-inf")

    async def cost(self, session: AsyncSession, endpoint: str) -> int:
        if time.monotonic() - self._loaded_at > PRICE_CACHE_SECONDS:
            rows = await CatalogRepository(session).prices()
            self._prices = {row.endpoint: row.credits for row in rows}
            self._loaded_at = time.monotonic()
        if endpoint not in self._prices:
            log.error("price_missing", endpoint=endpoint)
        return self._prices.get(endpoint, DEFAULT_PRICES.get(endpoint, 1))

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")


def app_price_book(request: Request) -> PriceBook:
    """The app's price book (one per app, created on first use)."""
    book: PriceBook | None = getattr(request.app.state, "price_book", None)
    if book is None:
        book = PriceBook()
        request.app.state.price_book = book
    return book


async def price_book(request: Request) -> PriceBook:
    """The app's price book, as a dependency (a coroutine: no threadpool hop)."""
    return app_price_book(request)


async def active_packs(session: AsyncSession) -> list[CreditPack]:
    return await CatalogRepository(session).packs(active_only=True)


async def all_packs(session: AsyncSession) -> list[CreditPack]:
    return await CatalogRepository(session).packs(active_only=False)


async def purchasable_pack(session: AsyncSession, pack_id: int) -> CreditPack:
    """An active pack, else 404."""
    pack = await CatalogRepository(session).pack(pack_id)
    if pack is None or not pack.is_active:
        raise NotFound("Credit pack not found.")
    return pack


async def create_pack(session: AsyncSession, values: dict[str, Any]) -> CreditPack:
    return await CatalogRepository(session).add_pack(CreditPack(**values))


async def update_pack(session: AsyncSession, pack_id: int, changes: dict[str, Any]) -> CreditPack:
    pack = await CatalogRepository(session).pack(pack_id)
    if pack is None:
        raise NotFound("Credit pack not found.")
    for name, value in changes.items():
        setattr(pack, name, value)
    await session.flush()
    return pack


async def prices(session: AsyncSession) -> list[CreditPrice]:
    return await CatalogRepository(session).prices()


async def update_price(
    session: AsyncSession, book: PriceBook, endpoint: str, changes: dict[str, Any]
) -> CreditPrice:
    """Change the cost of a known paid endpoint."""
    price = await CatalogRepository(session).price(endpoint)
    if price is None:
        raise NotFound("No such paid endpoint.")
    for name, value in changes.items():
        setattr(price, name, value)
    await session.flush()

    async def _invalidate() -> None:
        book.invalidate()

    # After the commit: a reload before it would cache the old price again.
    on_commit(session, _invalidate)
    log.info("price_changed", endpoint=endpoint, credits=price.credits)
    return price
