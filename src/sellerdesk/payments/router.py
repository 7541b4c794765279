"""Payment routes: intents, confirmation, admin refunds and the Stripe webhook."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from sellerdesk.auth.dependencies import AdminUser, CurrentUser
from sellerdesk.db import SessionDep
from sellerdesk.errors import error_body
from sellerdesk.kit import metrics
from sellerdesk.kit.idempotency import idempotent
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.types import IdPath
from sellerdesk.orders.schemas import OrderPublic
from sellerdesk.payments import service, webhooks
from sellerdesk.payments.providers import PaymentProvider
from sellerdesk.payments.schemas import (
    PaymentConfirmed,
    PaymentIntentCreate,
    PaymentIntentPublic,
    RefundCreate,
    RefundPublic,
    WebhookReceived,
)

router = APIRouter(prefix="/payments", tags=["payments"])


def get_provider(request: Request) -> PaymentProvider:
    provider: PaymentProvider = request.app.state.payments
    return provider


Provider = Annotated[PaymentProvider, Depends(get_provider)]


@router.post(
    "/create-payment-intent",
    response_model=PaymentIntentPublic,
    responses=errors(401, 404, 409, 422, 502),
)
@idempotent
async def create_payment_intent(
    body: PaymentIntentCreate, session: SessionDep, user: CurrentUser, provider: Provider
) -> PaymentIntentPublic:
    """The order's payment intent (the same one however often it is asked for)."""
    payment = await service.create_intent_for_order(session, provider, user.id, body.order_id)
    return PaymentIntentPublic(
        client_secret=payment.client_secret or "", payment_intent_id=payment.intent_id or ""
    )


@router.post(
    "/confirm-payment/{order_id}",
    response_model=PaymentConfirmed,
    responses=errors(400, 401, 404, 422, 502),
)
async def confirm_payment(
    order_id: IdPath, session: SessionDep, user: CurrentUser, provider: Provider
) -> Any:
    """Ask the provider about the order's payment; paid on success, else 400 payment_error."""
    result = await service.confirm_for_order(session, provider, user.id, order_id)
    if not result.succeeded:
        # Returned, not raised: the recorded failure (payment_status failed) must commit.
        order = OrderPublic.model_validate(result.order).model_dump(mode="json")
        return JSONResponse(
            error_body("payment_error", result.message, {"order": order}), status_code=400
        )
    return PaymentConfirmed(message=result.message, order=OrderPublic.model_validate(result.order))


@router.post("/refund", response_model=RefundPublic, responses=errors(401, 403, 404, 409, 422, 502))
@idempotent
async def refund(
    body: RefundCreate, session: SessionDep, admin: AdminUser, provider: Provider
) -> RefundPublic:
    """Refund an order's payment in full or in part (never more than was captured)."""
    result = await service.refund_order(session, provider, body.order_id, body.amount)
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


# The body is read raw (the signature covers its exact bytes), so OpenAPI is told its shape here.
_STRIPE_EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A Stripe event, signed in the Stripe-Signature header.",
                    "required": ["id", "type", "data"],
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string"},
                        "data": {"type": "object"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/webhook",
    response_model=WebhookReceived,
    responses=errors(400, 422, 503),
    openapi_extra=_STRIPE_EVENT_BODY,
)
async def webhook(
    request: Request,
    session: SessionDep,
    provider: Provider,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> WebhookReceived:
    """Stripe events, verified on the raw body and applied exactly once each."""
    payload = await request.body()
    event = webhooks.verify_event(request.app.state.settings, payload, stripe_signature)
    result = await service.handle_event(session, provider, event)
    metrics.WEBHOOK_EVENTS.labels(result).inc()
    return WebhookReceived(result=result)
