"""Order routes: checkout, the caller's orders, cancel, and the admin view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sellerdesk.auth.dependencies import AdminUser, CurrentUser
from sellerdesk.db import SessionDep
from sellerdesk.kit import metrics
from sellerdesk.kit.cache import CacheDep
from sellerdesk.kit.idempotency import idempotent
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.pagination import Page, PageDep
from sellerdesk.kit.types import IdPath
from sellerdesk.orders import service
from sellerdesk.orders.schemas import CheckoutIn, OrderPublic, OrderStatusUpdate
from sellerdesk.orders.state import OrderStatus

router = APIRouter(prefix="/orders", tags=["orders"])
admin_router = APIRouter(prefix="/admin/orders", tags=["orders", "admin"])


@router.post("", status_code=201, response_model=OrderPublic, responses=errors(401, 409, 422))
@idempotent
async def checkout(
    body: CheckoutIn, session: SessionDep, cache: CacheDep, user: CurrentUser
) -> OrderPublic:
    """Check out the cart: a pending order with its stock taken (honours Idempotency-Key)."""
    order = OrderPublic.model_validate(await service.checkout(session, cache, user, body))
    metrics.ORDERS_PLACED.inc()
    return order


@router.get("", response_model=Page[OrderPublic], responses=errors(401, 422))
async def list_orders(session: SessionDep, user: CurrentUser, params: PageDep) -> Page[OrderPublic]:
    """The caller's orders, newest first."""
    orders, total = await service.list_own(session, user, params)
    return Page.of([OrderPublic.model_validate(o) for o in orders], total, params)


@router.get("/{order_id}", response_model=OrderPublic, responses=errors(401, 404, 422))
async def read_order(order_id: IdPath, session: SessionDep, user: CurrentUser) -> OrderPublic:
    """One of the caller's orders."""
    return OrderPublic.model_validate(await service.get_own(session, user, order_id))


@router.post("/{order_id}/cancel", response_model=OrderPublic, responses=errors(401, 404, 409, 422))
async def cancel_order(
    order_id: IdPath, session: SessionDep, cache: CacheDep, user: CurrentUser
) -> OrderPublic:
    """Cancel a pending order (stock returned) or a paid one (refunded in full)."""
    return OrderPublic.model_validate(await service.cancel(session, cache, user, order_id))


@admin_router.get("", response_model=Page[OrderPublic], responses=errors(401, 403, 422))
async def admin_list_orders(
    session: SessionDep,
    _: AdminUser,
    params: PageDep,
    status: Annotated[OrderStatus | None, Query()] = None,
) -> Page[OrderPublic]:
    """Every order, newest first, optionally of one status (admin)."""
    orders, total = await service.list_all(session, params, status)
    return Page.of([OrderPublic.model_validate(o) for o in orders], total, params)


@admin_router.get("/{order_id}", response_model=OrderPublic, responses=errors(401, 403, 404, 422))
async def admin_read_order(order_id: IdPath, session: SessionDep, admin: AdminUser) -> OrderPublic:
    """Any order (admin)."""
    return OrderPublic.model_validate(await service.get_visible(session, admin, order_id))


@admin_router.patch(
    "/{order_id}", response_model=OrderPublic, responses=errors(401, 403, 404, 409, 422)
)
async def admin_update_order(
    order_id: IdPath,
    body: OrderStatusUpdate,
    session: SessionDep,
    cache: CacheDep,
    admin: AdminUser,
) -> OrderPublic:
    """Move an order along the state machine: paid → shipped → delivered, or cancel (admin)."""
    order = await service.admin_move(session, cache, admin, order_id, body.status)
    return OrderPublic.model_validate(order)
