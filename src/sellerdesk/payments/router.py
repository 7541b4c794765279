"""The Stripe webhook. Paying for something is its owner's route (an order's intent, confirm
and refund are order routes under `/payments`; a credit pack's are credit routes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from sellerdesk.db import SessionDep
from sellerdesk.kit import metrics
from sellerdesk.kit.openapi import errors
from sellerdesk.payments import service, webhooks
from sellerdesk.payments.providers import PaymentProvider
from sellerdesk.payments.schemas import WebhookReceived

router = APIRouter(prefix="/payments", tags=["payments"])


async def get_provider(request: Request) -> PaymentProvider:
    provider: PaymentProvider = request.app.state.payments
    return provider


Provider = Annotated[PaymentProvider, Depends(get_provider)]


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
    responses=errors(400, 413, 422, 503),
    openapi_extra=_STRIPE_EVENT_BODY,
    operation_id="stripe_webhook",
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
