"""Order routes: checkout, the caller's orders, cancel, the admin view, and paying for an order
(`/payments/create-payment-intent`, `/payments/confirm-payment/{id}`, `/payments/refund`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from sellerdesk.auth.dependencies import AdminUser, CurrentUser
from sellerdesk.db import SessionDep
from sellerdesk.errors import error_body
from sellerdesk.kit import metrics
from sellerdesk.kit.cache import CacheDep
from sellerdesk.kit.idempotency import client_key, idempotent
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.pagination import Page, PageDep
from sellerdesk.kit.types import IdPath
from sellerdesk.orders import service
from sellerdesk.orders.schemas import (
    CheckoutIn,
    OrderPublic,
    OrderStatusUpdate,
    PaymentConfirmed,
    PaymentIntentCreate,
    RefundCreate,
    RefundPublic,
)
from sellerdesk.orders.state import OrderStatus
from sellerdesk.payments.schemas import PaymentIntentPublic

router = APIRouter(prefix="/orders", tags=["orders"])
admin_router = APIRouter(prefix="/admin/orders", tags=["orders", "admin"])
payments_router = APIRouter(prefix="/payments", tags=["payments"])


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


# Cancelling a paid order refunds it at the provider: its 400/502 can surface here.
@router.post("/{order_id}/cancel", response_model=OrderPublic, responses=errors(400, 404, 409, 502))
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


@admin_router.patch("/{order_id}", response_model=OrderPublic, responses=errors(400, 404, 409, 502))
async def admin_update_order(
    order_id: IdPath,
    body: OrderStatusUpdate,
    session: SessionDep,
    cache: CacheDep,
    admin: AdminUser,
) -> OrderPublic:
    """Move an order along the state machine: paid → shipped → delivered, or cancel (admin)."""
    order = await service.admin_move(
        session,
        cache,
        admin,
        order_id,
        body.status,
        carrier=body.carrier,
        tracking_number=body.tracking_number,
    )
    return OrderPublic.model_validate(order)


# --------------------------------------------------------------------------- paying


@payments_router.post(
    "/create-payment-intent",
    response_model=PaymentIntentPublic,
    responses=errors(400, 404, 409, 502),
)
@idempotent
async def create_payment_intent(
    body: PaymentIntentCreate, session: SessionDep, user: CurrentUser
) -> PaymentIntentPublic:
    """The order's payment intent (the same one however often it is asked for)."""
    payment = await service.create_payment_intent(session, user.id, body.order_id)
    return PaymentIntentPublic(
        client_secret=payment.client_secret or "", payment_intent_id=payment.intent_id or ""
    )


@payments_router.post(
    "/confirm-payment/{order_id}",
    response_model=PaymentConfirmed,
    responses=errors(400, 401, 404, 422, 502),
)
async def confirm_payment(order_id: IdPath, session: SessionDep, user: CurrentUser) -> Any:
    """Ask the provider about the order's payment; paid on success, else 400 payment_error."""
    result = await service.confirm_payment(session, user.id, order_id)
    if not result.succeeded:
        # Returned, not raised: the recorded failure (payment_status failed) must commit.
        order = OrderPublic.model_validate(result.order).model_dump(mode="json")
        return JSONResponse(
            error_body("payment_error", result.message, {"order": order}), status_code=400
        )
    return PaymentConfirmed(message=result.message, order=OrderPublic.model_validate(result.order))


@payments_router.post(
    "/refund",
    response_model=RefundPublic,
    responses=errors(400, 404, 409, 502),
    operation_id="refund_payment",
)
@idempotent
async def refund(
    body: RefundCreate, session: SessionDep, admin: AdminUser, request: Request
) -> RefundPublic:
    """Refund an order's payment in full or in part (never more than was captured)."""
    result = await service.refund(
        session, admin, body.order_id, body.amount, idempotency_key=client_key(request)
    )
    return RefundPublic(
        id=result.refund.id,
        order_id=result.order.id,
        payment_intent_id=result.payment.intent_id or "",
        amount=result.refund.amount,
        refunded_total=result.payment.refunded_amount,
        captured_total=result.payment.amount,
        currency=result.payment.currency,
        status=result.refund.status,
        created_at=result.refund.created_at,
        order=OrderPublic.model_validate(result.order),
    )
