"""SQL of the Amazon data layer: the user's mappings and this store's catalog products by ASIN."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.models import AmazonMapping, Category, Product
from sellerdesk.models.base import utcnow


async def mappings_by_fnsku(
    session: AsyncSession, user_id: int, fnskus: Collection[str]
) -> dict[str, AmazonMapping]:
    """The user's own mappings for these FNSKUs (nobody else's are ever read)."""
    if not fnskus:
        return {}
    rows = await session.scalars(
        select(AmazonMapping).where(
            AmazonMapping.user_id == user_id, AmazonMapping.fnsku.in_(list(fnskus))
        )
    )
    return {row.fnsku: row for row in rows}


async def mapping_by_asin(session: AsyncSession, user_id: int, asin: str) -> AmazonMapping | None:
    """The user's most recently updated mapping for an ASIN."""
    stmt = (
        select(AmazonMapping)
        .where(AmazonMapping.user_id == user_id, AmazonMapping.asin == asin)
        .order_by(AmazonMapping.updated_at.desc(), AmazonMapping.id.desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()


async def catalog_product(session: AsyncSession, asin: str) -> tuple[Product, str | None] | None:
    """The store's oldest active product with this ASIN, with its category's name."""
    stmt = (
        select(Product, Category.name)
        .outerjoin(Category, Category.id == Product.category_id)
        .where(Product.asin == asin, Product.is_active.is_(True))
        .order_by(Product.id)
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None else None


async def catalog_products(session: AsyncSession, asins: Collection[str]) -> dict[str, Product]:
    """Active products by ASIN (the oldest one when several share an ASIN)."""
    if not asins:
        return {}
    rows = await session.scalars(
        select(Product)
        .where(Product.asin.in_(list(asins)), Product.is_active.is_(True))
        .order_by(Product.id.desc())
    )
    # Descending order: the oldest product is written last and wins.
    return {row.asin: row for row in rows if row.asin is not None}


async def lock_user_mappings(session: AsyncSession, user_id: int) -> None:
    """Serialise one user's report imports until the transaction ends.

    Two overlapping imports upserting the same keys in different orders could otherwise
    deadlock on PostgreSQL; SQLite already runs one writer at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"amazon_mapping:{user_id}"},
        )


async def count_mappings(session: AsyncSession, user_id: int) -> int:
    stmt = select(func.count()).select_from(AmazonMapping).where(AmazonMapping.user_id == user_id)
    return int(await session.scalar(stmt) or 0)


_MAPPINGS = cast(Table, AmazonMapping.__table__)


def _upsert_statement(dialect: str) -> Any:
    # One statement per dialect, compiled once (SQLAlchemy caches it) and run as executemany:
    # a fresh multi-row VALUES per chunk would be recompiled every time.
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(_MAPPINGS)
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "fnsku"],
        set_={
            "asin": stmt.excluded.asin,
            "sku": stmt.excluded.sku,
            "title": stmt.excluded.title,
            "updated_at": stmt.excluded.updated_at,
        },
    )


_UPSERTS = {name: _upsert_statement(name) for name in ("postgresql", "sqlite")}


async def upsert_mappings(
    session: AsyncSession, user_id: int, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert or overwrite (user, fnsku) mappings; keys must be distinct."""
    if not rows:
        return
    now = utcnow()
    values = [{**row, "user_id": user_id, "created_at": now, "updated_at": now} for row in rows]
    await session.execute(_UPSERTS[session.get_bind().dialect.name], values)
