"""Catalog rules: the category tree, products, the public listing and cache invalidation."""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.catalog.cache import NAMESPACE
from sellerdesk.catalog.repository import (
    PUBLIC_COLUMNS,
    CategoryRepository,
    ProductRepository,
)
from sellerdesk.catalog.schemas import (
    CategoryCreate,
    CategoryNode,
    CategoryUpdate,
    ProductCreate,
    ProductFilters,
    ProductPublic,
    ProductUpdate,
)
from sellerdesk.db import on_commit
from sellerdesk.errors import Conflict, NotFound, ValidationFailed
from sellerdesk.inventory.movements import record_movement
from sellerdesk.kit.cache import Cache
from sellerdesk.kit.pagination import Page, PageParams
from sellerdesk.models import Category, Product

log = structlog.get_logger(__name__)

_TREE = TypeAdapter(list[CategoryNode])
_NODE = TypeAdapter(CategoryNode)
_PAGE = TypeAdapter(Page[ProductPublic])
_PRODUCT = TypeAdapter(ProductPublic)


async def invalidate_catalog(session: AsyncSession, cache: Cache) -> None:
    """Drop every cached catalog response once `session` commits (call on any stock change)."""
    queued = session.info.get("after_commit", [])
    if any(getattr(callback, "catalog_invalidation", False) for callback in queued):
        return  # once per transaction is enough

    async def invalidate_catalog_cache() -> None:
        await cache.invalidate(NAMESPACE)

    invalidate_catalog_cache.catalog_invalidation = True  # type: ignore[attr-defined]
    on_commit(session, invalidate_catalog_cache)


# --------------------------------------------------------------------------- categories


async def category_tree(session: AsyncSession) -> list[CategoryNode]:
    """Active categories as a tree, from one query; a hidden parent hides its subtree."""
    rows = await CategoryRepository(session).active_tree_rows()
    nodes = {
        row.id: CategoryNode(
            id=row.id,
            name=row.name,
            slug=row.slug,
            description=row.description,
            parent_id=row.parent_id,
            children=[],
        )
        for row in rows
    }
    roots: list[CategoryNode] = []
    for node in nodes.values():  # rows are ordered by name, so children come out ordered too
        if node.parent_id is None:
            roots.append(node)
        elif node.parent_id in nodes:
            nodes[node.parent_id].children.append(node)
    return roots


def _find(nodes: list[CategoryNode], slug: str) -> CategoryNode | None:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node.slug == slug:
            return node
        stack.extend(node.children)
    return None


async def category_tree_json(session: AsyncSession) -> bytes:
    return _TREE.dump_json(await category_tree(session))


async def category_json(session: AsyncSession, slug: str) -> bytes:
    """One visible category with its sub-tree; hidden or unknown → 404."""
    node = _find(await category_tree(session), slug)
    if node is None:
        raise NotFound("No such category.")
    return _NODE.dump_json(node)


async def _check_parent(repo: CategoryRepository, parent_id: int) -> None:
    if await repo.get(parent_id) is None:
        raise ValidationFailed(
            "The parent category does not exist.",
            details=[{"loc": ["body", "parent_id"], "msg": "unknown category"}],
        )


async def _flush_unique_slug(session: AsyncSession, category: Category) -> None:
    try:
        async with session.begin_nested():
            session.add(category)
            await session.flush()
    except IntegrityError as exc:  # a concurrent request took the slug first
        raise Conflict(f"The slug {category.slug!r} is already taken.") from exc


async def create_category(session: AsyncSession, cache: Cache, data: CategoryCreate) -> Category:
    """A new category; a taken slug is a 409, an unknown parent a 422."""
    repo = CategoryRepository(session)
    if await repo.slug_taken(data.slug):
        raise Conflict(f"The slug {data.slug!r} is already taken.")
    if data.parent_id is not None:
        await _check_parent(repo, data.parent_id)
    category = Category(**data.model_dump())
    await _flush_unique_slug(session, category)
    await invalidate_catalog(session, cache)
    log.info("category_created", category_id=category.id)
    return category


async def update_category(
    session: AsyncSession, cache: Cache, category_id: int, data: CategoryUpdate
) -> Category:
    """Change a category; moving it below itself or its descendants is a 422."""
    repo = CategoryRepository(session)
    category = await repo.get(category_id)
    if category is None:
        raise NotFound("No such category.")
    changes = data.model_dump(exclude_unset=True)
    if "slug" in changes and await repo.slug_taken(changes["slug"], other_than=category_id):
        raise Conflict(f"The slug {changes['slug']!r} is already taken.")
    parent_id = changes.get("parent_id")
    if parent_id is not None and parent_id != category.parent_id:
        await repo.lock_tree()
        await _check_parent(repo, parent_id)
        if category_id in await repo.ancestor_ids(parent_id):
            raise ValidationFailed(
                "A category cannot be moved below itself or one of its descendants.",
                details=[{"loc": ["body", "parent_id"], "msg": "would create a cycle"}],
            )
    for name, value in changes.items():
        setattr(category, name, value)
    await _flush_unique_slug(session, category)
    await invalidate_catalog(session, cache)
    log.info("category_updated", category_id=category_id, fields=sorted(changes))
    return category


async def delete_category(session: AsyncSession, cache: Cache, category_id: int) -> None:
    """Delete an empty leaf; products (active or not) or sub-categories → 409."""
    repo = CategoryRepository(session)
    category = await repo.get(category_id)
    if category is None:
        raise NotFound("No such category.")
    if await repo.has_products(category_id):
        raise Conflict("The category still has products; move or delete them first.")
    if await repo.has_children(category_id):
        raise Conflict("The category still has sub-categories; move or delete them first.")
    try:
        async with session.begin_nested():
            await repo.delete(category)
    except IntegrityError as exc:  # a product or child arrived meanwhile
        raise Conflict("The category is in use.") from exc
    await invalidate_catalog(session, cache)
    log.info("category_deleted", category_id=category_id)


# --------------------------------------------------------------------------- products


async def list_products_json(
    session: AsyncSession, filters: ProductFilters, params: PageParams
) -> bytes:
    """The listing page as JSON bytes, built from plain rows.

    The rows are our own stored values (the columns' types and constraints already hold what
    validation would check), so the models are constructed, not validated; serialising them is
    the same as for a validated model."""
    rows, total = await ProductRepository(session).page_rows(filters, params)
    construct = ProductPublic.model_construct
    items = [construct(**dict(zip(PUBLIC_COLUMNS, row, strict=False))) for row in rows]
    page = Page[ProductPublic].model_construct(
        items=items, total=total, page=params.page, page_size=params.page_size
    )
    return _PAGE.dump_json(page)


async def list_products(
    session: AsyncSession, filters: ProductFilters, params: PageParams
) -> tuple[list[Product], int]:
    """One page of products and the total (the listing's filters and sorts)."""
    products, total = await ProductRepository(session).page(filters, params)
    return list(products), total


async def get_product(session: AsyncSession, product_id: int, *, admin: bool) -> Product:
    """A product; inactive ones exist only for admins."""
    product = await ProductRepository(session).get(product_id)
    if product is None or (not product.is_active and not admin):
        raise NotFound("No such product.")
    return product


async def product_json(session: AsyncSession, product_id: int) -> bytes:
    return _PRODUCT.dump_json(
        ProductPublic.model_validate(await get_product(session, product_id, admin=False))
    )


async def _check_category(repo: ProductRepository, category_id: int) -> None:
    if not await repo.category_exists(category_id):
        raise ValidationFailed(
            "The category does not exist.",
            details=[{"loc": ["body", "category_id"], "msg": "unknown category"}],
        )


async def _flush_product(session: AsyncSession, product: Product) -> None:
    try:
        async with session.begin_nested():
            session.add(product)
            await session.flush()
    except IntegrityError as exc:  # a concurrent request took the sku first
        raise Conflict(f"The sku {product.sku!r} is already taken.") from exc


async def create_product(
    session: AsyncSession, cache: Cache, currency: str, data: ProductCreate, user_id: int
) -> Product:
    """A new product; its opening stock is recorded as an `initial` movement."""
    repo = ProductRepository(session)
    if await repo.sku_taken(data.sku):
        raise Conflict(f"The sku {data.sku!r} is already taken.")
    if data.category_id is not None:
        await _check_category(repo, data.category_id)
    values: dict[str, Any] = data.model_dump()
    values["currency"] = data.currency or currency
    product = Product(**values)
    await _flush_product(session, product)
    if product.stock_quantity:
        await record_movement(
            session,
            product_id=product.id,
            delta=product.stock_quantity,
            stock_after=product.stock_quantity,
            low_stock_threshold=product.low_stock_threshold,
            reason="initial",
            user_id=user_id,
        )
    await invalidate_catalog(session, cache)
    log.info("product_created", product_id=product.id)
    return product


async def update_product(
    session: AsyncSession, cache: Cache, product_id: int, data: ProductUpdate, user_id: int
) -> Product:
    """Change the given fields; a new stock level is recorded as an `adjustment`."""
    repo = ProductRepository(session)
    product = await repo.get(product_id, for_update=True)  # stock must not move under us
    if product is None:
        raise NotFound("No such product.")
    changes = data.model_dump(exclude_unset=True)
    if "sku" in changes and await repo.sku_taken(changes["sku"], other_than=product_id):
        raise Conflict(f"The sku {changes['sku']!r} is already taken.")
    if changes.get("category_id") is not None:
        await _check_category(repo, changes["category_id"])
    stock_before = product.stock_quantity
    for name, value in changes.items():
        setattr(product, name, value)
    await _flush_product(session, product)
    delta = product.stock_quantity - stock_before
    if delta:
        await record_movement(
            session,
            product_id=product.id,
            delta=delta,
            stock_after=product.stock_quantity,
            low_stock_threshold=product.low_stock_threshold,
            reason="adjustment",
            note="set by product update",
            user_id=user_id,
        )
    await invalidate_catalog(session, cache)
    log.info("product_updated", product_id=product_id, fields=sorted(changes))
    return product


async def delete_product(session: AsyncSession, cache: Cache, product_id: int) -> None:
    """Remove a product; one that orders reference is only deactivated (kept for history)."""
    repo = ProductRepository(session)
    # The row lock makes a concurrent checkout of this product wait for our decision.
    product = await repo.get(product_id, for_update=True)
    if product is None:
        raise NotFound("No such product.")
    soft = await repo.ordered(product_id)
    if not soft:
        try:
            async with session.begin_nested():
                await repo.hard_delete(product_id)
        except IntegrityError:  # referenced after all (SQLite cannot lock the row)
            soft = True
    if soft:
        product.is_active = False
        await session.flush()
    else:
        session.expunge(product)
    await invalidate_catalog(session, cache)
    log.info("product_deleted", product_id=product_id, soft=soft)
