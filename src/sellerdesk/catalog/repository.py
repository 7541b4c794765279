"""Catalog SQL: categories, products and the listing query."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    column,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    values,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from sellerdesk.catalog.schemas import ProductFilters
from sellerdesk.db import insert_for
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import Category, OrderItem, Product
from sellerdesk.models.base import utcnow

PRODUCT_TABLE = cast(Table, Product.__table__)
PUBLIC_COLUMNS = (
    "id",
    "name",
    "description",
    "price",
    "currency",
    "stock_quantity",
    "low_stock_threshold",
    "category_id",
    "sku",
    "asin",
    "images",
    "is_active",
    "created_at",
    "updated_at",
)
"""The product columns a listing answers with (`ProductPublic` without `in_stock`)."""

TREE_COLUMNS = (
    Category.id,
    Category.name,
    Category.slug,
    Category.description,
    Category.parent_id,
)


def like_pattern(q: str) -> str:
    """`%q%` with the LIKE wildcards of q escaped, so they match themselves."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class CategoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, category_id: int) -> Category | None:
        return await self.session.get(Category, category_id)

    async def slug_taken(self, slug: str, *, other_than: int | None = None) -> bool:
        stmt = select(exists().where(Category.slug == slug, Category.id != (other_than or 0)))
        return bool(await self.session.scalar(stmt))

    async def active_tree_rows(self) -> Sequence[Row[int, str, str, str | None, int | None]]:
        """Every active category, one query; the tree is assembled by the caller."""
        stmt = (
            select(*TREE_COLUMNS)
            .where(Category.is_active.is_(True))
            .order_by(Category.name, Category.id)
        )
        return (await self.session.execute(stmt)).all()

    async def ancestor_ids(self, category_id: int) -> set[int]:
        """The category and every category above it."""
        up = (
            select(Category.id, Category.parent_id)
            .where(Category.id == category_id)
            .cte("ancestors", recursive=True)
        )
        up = up.union(
            select(Category.id, Category.parent_id).join(up, Category.id == up.c.parent_id)
        )
        return set((await self.session.scalars(select(up.c.id))).all())

    async def has_children(self, category_id: int) -> bool:
        return bool(
            await self.session.scalar(select(exists().where(Category.parent_id == category_id)))
        )

    async def has_products(self, category_id: int) -> bool:
        return bool(
            await self.session.scalar(select(exists().where(Product.category_id == category_id)))
        )

    async def ids_by_slug(self, slugs: Iterable[str]) -> dict[str, int]:
        slugs = list(slugs)
        if not slugs:
            return {}
        rows = await self.session.execute(
            select(Category.slug, Category.id).where(Category.slug.in_(slugs))
        )
        return {slug: category_id for slug, category_id in rows.all()}

    async def lock_tree(self) -> None:
        """Serialise moves inside the tree, so two concurrent moves cannot close a cycle."""
        # SQLite already serialises writers (BEGIN IMMEDIATE); PostgreSQL needs a lock.
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('category_tree'))")
            )

    async def delete(self, category: Category) -> None:
        await self.session.delete(category)
        await self.session.flush()


def subtree_ids(slug: Any, *, active_only: bool) -> Select[Any]:
    """SELECT the id of the category with this slug (a value or a bind parameter) and of all
    its descendants."""
    root = select(Category.id).where(Category.slug == slug)
    if active_only:
        root = root.where(Category.is_active.is_(True))
    tree = root.cte("subtree", recursive=True)
    tree = tree.union_all(select(Category.id).join(tree, Category.parent_id == tree.c.id))
    return select(tree.c.id)


_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


class ListingShape(NamedTuple):
    """Which of the listing's filters are set, and the sort: one cached statement each."""

    include_inactive: bool
    category: bool
    q: bool
    min_price: bool
    max_price: bool
    in_stock: bool | None
    sort: str

    @classmethod
    def of(cls, filters: ProductFilters) -> ListingShape:
        return cls(
            include_inactive=filters.include_inactive,
            category=filters.category is not None,
            q=bool(filters.q),
            min_price=filters.min_price is not None,
            max_price=filters.max_price is not None,
            in_stock=filters.in_stock,
            sort=filters.sort,
        )


def listing_params(filters: ProductFilters, params: PageParams) -> dict[str, Any]:
    """The bind parameters of the listing statements for these filters and this page."""
    values: dict[str, Any] = {"limit": params.page_size, "offset": params.offset}
    if filters.category is not None:
        values["category"] = filters.category
    if filters.q:
        values["pattern"] = like_pattern(filters.q)
    if filters.min_price is not None:
        values["min_price"] = filters.min_price
    if filters.max_price is not None:
        values["max_price"] = filters.max_price
    return values


def _listing_conditions(shape: ListingShape) -> list[ColumnElement[bool]]:
    """The WHERE clause of a listing shape, its values as bind parameters (`listing_params`)."""
    t = PRODUCT_TABLE.c
    conditions: list[ColumnElement[bool]] = []
    if not shape.include_inactive:
        conditions.append(t.is_active.is_(True))
    if shape.category:
        slug = bindparam("category", type_=String())
        conditions.append(
            t.category_id.in_(subtree_ids(slug, active_only=not shape.include_inactive))
        )
    if shape.q:
        pattern = bindparam("pattern", type_=String())
        conditions.append(
            or_(
                t.name.ilike(pattern, escape="\\"),
                t.description.ilike(pattern, escape="\\"),
                t.sku.ilike(pattern, escape="\\"),
            )
        )
    if shape.min_price:
        conditions.append(t.price >= bindparam("min_price", type_=t.price.type))
    if shape.max_price:
        conditions.append(t.price <= bindparam("max_price", type_=t.price.type))
    if shape.in_stock is True:
        conditions.append(t.stock_quantity > 0)
    elif shape.in_stock is False:
        conditions.append(t.stock_quantity == 0)
    return conditions


@lru_cache(maxsize=1024)
def listing_statement(shape: ListingShape) -> Select[Any]:
    """One page of a listing shape and the total, from one statement: one scan feeds a window
    count. Built once per shape and kept: executing the same statement object again reuses its
    cache key and compiled form, so a request only binds its values."""
    # The count and the filter live in a subquery and the sort outside it. Sorted in the same
    # SELECT, PostgreSQL walks the sort index under the LIMIT (it does not see that the window
    # count reads every row anyway) instead of using the trigram indexes for `q`.
    matches = (
        select(
            *(PRODUCT_TABLE.c[name] for name in PUBLIC_COLUMNS),
            func.count(literal(1)).over().label("total"),
        )
        .where(*_listing_conditions(shape))
        .subquery("matches")
    )
    key = matches.c[shape.sort.lstrip("-")]
    if shape.sort.startswith("-"):
        order = (key.desc(), matches.c.id.desc())
    else:
        order = (key.asc(), matches.c.id.asc())
    return (
        select(*(matches.c[name] for name in PUBLIC_COLUMNS), matches.c.total)
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer()))
        .offset(bindparam("offset", type_=Integer()))
    )


@lru_cache(maxsize=1024)
def listing_count(shape: ListingShape) -> Select[Any]:
    """The number of products a listing shape matches (for a page past the last one)."""
    return select(func.count()).select_from(PRODUCT_TABLE).where(*_listing_conditions(shape))


class ProductRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def is_postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    async def get(self, product_id: int, *, for_update: bool = False) -> Product | None:
        if not for_update:
            return await self.session.get(Product, product_id)
        stmt = select(Product).where(Product.id == product_id).with_for_update()
        return (await self.session.scalars(stmt)).one_or_none()

    async def sku_taken(self, sku: str, *, other_than: int | None = None) -> bool:
        stmt = select(exists().where(Product.sku == sku, Product.id != (other_than or 0)))
        return bool(await self.session.scalar(stmt))

    async def category_exists(self, category_id: int) -> bool:
        return bool(await self.session.scalar(select(exists().where(Category.id == category_id))))

    async def ordered(self, product_id: int) -> bool:
        """Whether any order line references the product (then it may only be deactivated)."""
        stmt = select(exists().where(OrderItem.product_id == product_id))
        return bool(await self.session.scalar(stmt))

    async def hard_delete(self, product_id: int) -> None:
        await self.session.execute(delete(Product).where(Product.id == product_id))

    def _conditions(self, filters: ProductFilters) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if not filters.include_inactive:
            conditions.append(Product.is_active.is_(True))
        if filters.category is not None:
            ids = subtree_ids(filters.category, active_only=not filters.include_inactive)
            conditions.append(Product.category_id.in_(ids))
        if filters.q:
            pattern = like_pattern(filters.q)
            conditions.append(
                or_(
                    Product.name.ilike(pattern, escape="\\"),
                    Product.description.ilike(pattern, escape="\\"),
                    Product.sku.ilike(pattern, escape="\\"),
                )
            )
        if filters.min_price is not None:
            conditions.append(Product.price >= filters.min_price)
        if filters.max_price is not None:
            conditions.append(Product.price <= filters.max_price)
        if filters.in_stock is True:
            conditions.append(Product.stock_quantity > 0)
        elif filters.in_stock is False:
            conditions.append(Product.stock_quantity == 0)
        return conditions

    async def page(
        self, filters: ProductFilters, params: PageParams
    ) -> tuple[Sequence[Product], int]:
        """One page as ORM objects and the total (the admin dashboard's list); the JSON listing
        reads the same page as plain rows with `page_rows`."""
        # The count and the filter live in a subquery and the sort outside it. Sorted in the
        # same SELECT, PostgreSQL walks the sort index under the LIMIT (it does not see that the
        # window count reads every row anyway) instead of using the trigram indexes for `q`.
        matches = (
            select(Product, func.count(literal(1)).over().label("total"))
            .where(*self._conditions(filters))
            .subquery("matches")
        )
        product = aliased(Product, matches)
        column = getattr(product, filters.sort.lstrip("-"))
        if filters.sort.startswith("-"):
            order = (column.desc(), product.id.desc())
        else:
            order = (column.asc(), product.id.asc())
        stmt = (
            select(product, matches.c.total)
            .order_by(*order)
            .limit(params.page_size)
            .offset(params.offset)
        )
        rows = (await self.session.execute(stmt)).all()
        if rows:
            return [row[0] for row in rows], int(rows[0][1])
        if params.page == 1:
            return [], 0
        # Past the last page no row carries the total: count once.
        count = select(func.count()).select_from(Product).where(*self._conditions(filters))
        return [], int(await self.session.scalar(count) or 0)

    async def page_rows(
        self, filters: ProductFilters, params: PageParams
    ) -> tuple[Sequence[Row[Any]], int]:
        """One page as plain rows (the `PUBLIC_COLUMNS`) and the total, from one statement.

        Core on the session's connection: no ORM entities, no statement built per request. On
        PostgreSQL a session that has not begun yet (a public read) reads in autocommit: the
        page and its total come from one statement, so its own snapshot is all they need, and
        the BEGIN and COMMIT round trips are saved."""
        shape = ListingShape.of(filters)
        values = listing_params(filters, params)
        if self.is_postgres and not self.session.in_transaction():
            connection = await self.session.connection(execution_options=_AUTOCOMMIT)
        else:
            connection = await self.session.connection()
        rows = (await connection.execute(listing_statement(shape), values)).all()
        if rows:
            return rows, int(rows[0].total)
        if params.page == 1:
            return [], 0
        # Past the last page no row carries the total: count once.
        del values["limit"], values["offset"]
        return [], int((await connection.execute(listing_count(shape), values)).scalar() or 0)

    # ------------------------------------------------------------------ import

    async def stock_by_sku(self, skus: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """sku → (id, stock_quantity, low_stock_threshold), rows locked until commit."""
        stmt = (
            select(Product.sku, Product.id, Product.stock_quantity, Product.low_stock_threshold)
            .order_by(Product.id)
            .with_for_update(of=Product)
        )
        if self.is_postgres:
            # A join to a VALUES list, not `sku IN (...)`: PostgreSQL checks an IN list of bound
            # parameters linearly per row, and without statistics it scans the whole table.
            wanted = values(column("sku", String), name="wanted").data([(sku,) for sku in skus])
            stmt = stmt.join(wanted, Product.sku == wanted.c.sku)
        else:
            stmt = stmt.where(Product.sku.in_(skus))  # SQLite probes the unique index per item
        rows = (await self.session.execute(stmt)).all()
        return {sku: (pid, stock, threshold) for sku, pid, stock, threshold in rows}

    async def upsert(
        self, rows: list[dict[str, Any]], update_columns: Sequence[str]
    ) -> list[tuple[int, str, int, int]]:
        """INSERT … ON CONFLICT (sku) DO UPDATE for a batch; (id, sku, stock, threshold) each."""
        table = Product.__table__
        # PostgreSQL's and SQLite's Insert share the ON CONFLICT API but no common type.
        stmt: Any = insert_for(self.session, table)
        excluded = stmt.excluded
        values = {name: excluded[name] for name in update_columns}
        values["updated_at"] = utcnow()
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.sku], set_=values).returning(
            table.c.id, table.c.sku, table.c.stock_quantity, table.c.low_stock_threshold
        )
        result = await self.session.execute(stmt, rows)
        return [(r[0], r[1], r[2], r[3]) for r in result.all()]
