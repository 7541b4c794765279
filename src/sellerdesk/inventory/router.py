"""Admin inventory routes: adjustments, movement history, low stock."""

from __future__ import annotations

from fastapi import APIRouter

from sellerdesk.auth.dependencies import AdminUser
from sellerdesk.db import SessionDep
from sellerdesk.inventory import service
from sellerdesk.inventory.schemas import (
    LowStockProduct,
    StockAdjust,
    StockLevelPublic,
    StockMovementPublic,
)
from sellerdesk.kit.cache import CacheDep
from sellerdesk.kit.idempotency import idempotent
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.pagination import Page, PageDep
from sellerdesk.kit.types import IdPath

router = APIRouter(prefix="/admin/inventory", tags=["inventory", "admin"])


@router.get("/low-stock", response_model=Page[LowStockProduct], responses=errors(401, 403, 422))
async def low_stock(session: SessionDep, _: AdminUser, params: PageDep) -> Page[LowStockProduct]:
    """Active products at or below their low-stock threshold, emptiest first (admin)."""
    products, total = await service.low_stock(session, params)
    return Page.of([LowStockProduct.model_validate(p) for p in products], total, params)


@router.post(
    "/{product_id}/adjust",
    response_model=StockLevelPublic,
    responses=errors(401, 403, 404, 409, 422),
)
@idempotent
async def adjust_stock(
    product_id: IdPath, body: StockAdjust, session: SessionDep, cache: CacheDep, admin: AdminUser
) -> StockLevelPublic:
    """Add or remove stock with a reason; never below 0 (admin)."""
    level = await service.adjust(session, cache, admin, product_id, body.delta, body.reason)
    return StockLevelPublic.model_validate(level)


@router.get(
    "/{product_id}/movements",
    response_model=Page[StockMovementPublic],
    responses=errors(401, 403, 404, 422),
)
async def stock_movements(
    product_id: IdPath, session: SessionDep, _: AdminUser, params: PageDep
) -> Page[StockMovementPublic]:
    """A product's stock changes, newest first (admin)."""
    movements, total = await service.movements(session, product_id, params)
    return Page.of([StockMovementPublic.model_validate(m) for m in movements], total, params)
