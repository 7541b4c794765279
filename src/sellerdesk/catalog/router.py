"""Catalog routes: the public category tree and product listing, and admin management."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile

from sellerdesk.auth.dependencies import AdminUser, OptionalUser
from sellerdesk.catalog import importer, service
from sellerdesk.catalog.cache import cached, digest, json_response
from sellerdesk.catalog.schemas import (
    SORT_ENUM_NAMES,
    CategoryCreate,
    CategoryNode,
    CategoryPublic,
    CategoryUpdate,
    ImportReport,
    ProductCreate,
    ProductFilters,
    ProductPublic,
    ProductSort,
    ProductUpdate,
)
from sellerdesk.config import Settings
from sellerdesk.db import SessionDep
from sellerdesk.kit.cache import Cache, request_cache
from sellerdesk.kit.money import Money
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.pagination import Page, PageDep
from sellerdesk.kit.types import IdPath, QueryText

router = APIRouter(tags=["catalog"])


async def _cache(request: Request) -> Cache:
    return request_cache(request)


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


CacheDep = Annotated[Cache, Depends(_cache)]
SettingsDep = Annotated[Settings, Depends(_settings)]

# --------------------------------------------------------------------------- categories


@router.get("/categories", response_model=list[CategoryNode])
async def category_tree(session: SessionDep, cache: CacheDep, settings: SettingsDep) -> Response:
    """Active categories as a tree."""
    body, hit = await cached(
        cache,
        "tree",
        settings.CACHE_TTL_SECONDS,
        lambda: service.category_tree_json(session),
    )
    return json_response(body, hit=hit)


@router.get("/categories/{slug}", response_model=CategoryNode, responses=errors(404))
async def read_category(
    slug: Annotated[str, Path(max_length=200)],
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> Response:
    """One active category with its sub-categories."""
    body, hit = await cached(
        cache,
        f"category:{digest({'slug': slug})}",
        settings.CACHE_TTL_SECONDS,
        lambda: service.category_json(session, slug),
    )
    return json_response(body, hit=hit)


@router.post(
    "/categories",
    response_model=CategoryPublic,
    status_code=201,
    responses=errors(401, 403, 409, 422),
)
async def create_category(
    body: CategoryCreate, session: SessionDep, cache: CacheDep, _: AdminUser
) -> CategoryPublic:
    """Create a category (admin); an unknown `parent_id` is a 422."""
    return CategoryPublic.model_validate(await service.create_category(session, cache, body))


@router.patch(
    "/categories/{category_id}",
    response_model=CategoryPublic,
    description=(
        "Partial update. `parent_id` may not be the category itself or one of its descendants "
        "(422 `validation_error`); an unknown `parent_id` is also a 422; `null` makes it a root."
    ),
    responses=errors(401, 403, 404, 409, 422),
)
async def update_category(
    category_id: IdPath, body: CategoryUpdate, session: SessionDep, cache: CacheDep, _: AdminUser
) -> CategoryPublic:
    """Change a category (admin); a parent may not become its own descendant."""
    category = await service.update_category(session, cache, category_id, body)
    return CategoryPublic.model_validate(category)


@router.delete(
    "/categories/{category_id}", status_code=204, responses=errors(401, 403, 404, 409, 422)
)
async def delete_category(
    category_id: IdPath, session: SessionDep, cache: CacheDep, _: AdminUser
) -> Response:
    """Delete a category without products or sub-categories (admin)."""
    await service.delete_category(session, cache, category_id)
    return Response(status_code=204)


# --------------------------------------------------------------------------- products


@router.get(
    "/products",
    response_model=Page[ProductPublic],
    responses=errors(401, 403, 422),
    description=(
        "`category`: a slug; products of the category and of all its descendants. An unknown "
        "or hidden slug gives an empty page (200), like any filter that matches nothing. "
        "`q`: case-insensitive substring of name, description or sku (`%`, `_` and `\\` match "
        "themselves). `min_price`/`max_price`: inclusive. `in_stock=true|false`. `sort`: "
        "name, -name, price, -price, created_at, -created_at (default -created_at); ties are "
        "broken by id. Inactive products are listed only to admins who pass "
        "`include_inactive=true`. Public answers are cached until the next catalog write."
    ),
)
async def list_products(
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    user: OptionalUser,
    params: PageDep,
    category: QueryText = None,
    q: QueryText = None,
    min_price: Annotated[Money | None, Query()] = None,
    max_price: Annotated[Money | None, Query()] = None,
    in_stock: bool | None = None,
    sort: Annotated[
        ProductSort,
        Query(json_schema_extra=SORT_ENUM_NAMES),
    ] = "-created_at",
    include_inactive: Annotated[bool, Query(description="Admins only.")] = False,
) -> Response:
    """Active products, filtered, sorted and paginated."""
    admin = user is not None and user.is_superuser
    filters = ProductFilters(
        category=category,
        q=q or None,
        min_price=min_price,
        max_price=max_price,
        in_stock=in_stock,
        sort=sort,
        include_inactive=include_inactive and admin,
    )
    if admin:  # admins see their own writes at once and may see inactive products
        return json_response(await service.list_products_json(session, filters, params))
    key = digest({**filters.model_dump(mode="json"), "page": params.page, "size": params.page_size})
    body, hit = await cached(
        cache,
        f"products:{key}",
        settings.CACHE_TTL_SECONDS,
        lambda: service.list_products_json(session, filters, params),
    )
    return json_response(body, hit=hit)


@router.get(
    "/products/{product_id}", response_model=ProductPublic, responses=errors(401, 403, 404, 422)
)
async def read_product(
    product_id: IdPath,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    user: OptionalUser,
) -> Response:
    """One product; inactive products are 404 except to admins."""
    if user is not None and user.is_superuser:
        product = await service.get_product(session, product_id, admin=True)
        return json_response(ProductPublic.model_validate(product).model_dump_json().encode())
    body, hit = await cached(
        cache,
        f"product:{product_id}",
        settings.CACHE_TTL_SECONDS,
        lambda: service.product_json(session, product_id),
    )
    return json_response(body, hit=hit)


@router.post(
    "/products",
    response_model=ProductPublic,
    status_code=201,
    responses=errors(401, 403, 409, 422),
)
async def create_product(
    body: ProductCreate,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    admin: AdminUser,
) -> ProductPublic:
    """Create a product (admin); a taken sku is a 409, an unknown category a 422."""
    product = await service.create_product(session, cache, settings.CURRENCY, body, admin.id)
    return ProductPublic.model_validate(product)


@router.post("/products/import", response_model=ImportReport, responses=errors(401, 403, 413, 422))
async def import_products(
    file: Annotated[
        UploadFile,
        File(description="CSV or TSV: sku,name,description,price,stock_quantity,category_slug"),
    ],
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    admin: AdminUser,
) -> ImportReport:
    """Upsert products by sku from a CSV upload (admin); any bad row and nothing is written."""
    return await importer.import_products(session, cache, settings.CURRENCY, file.file, admin.id)


@router.patch(
    "/products/{product_id}",
    response_model=ProductPublic,
    responses=errors(401, 403, 404, 409, 422),
)
async def update_product(
    product_id: IdPath, body: ProductUpdate, session: SessionDep, cache: CacheDep, admin: AdminUser
) -> ProductPublic:
    """Change a product (admin); returns it updated."""
    product = await service.update_product(session, cache, product_id, body, admin.id)
    return ProductPublic.model_validate(product)


@router.delete("/products/{product_id}", status_code=204, responses=errors(401, 403, 404, 422))
async def delete_product(
    product_id: IdPath, session: SessionDep, cache: CacheDep, _: AdminUser
) -> Response:
    """Delete a product, or deactivate it when orders reference it (admin)."""
    await service.delete_product(session, cache, product_id)
    return Response(status_code=204)
