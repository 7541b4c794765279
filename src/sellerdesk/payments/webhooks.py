"""Stripe webhook events: the signature check on the raw body, and what a handled event says
about its payment intent. Applying it is `service.handle_event`'s job.

Answers: a missing, malformed, wrong, tampered or older-than-300-s signature, or a signed body
that is not a Stripe event, is 400 `payment_error` and changes nothing; with no
STRIPE_WEBHOOK_SECRET set the route answers 503 `service_unavailable` (Stripe retries 5xx, so
events sent meanwhile are not lost). The route works whatever PAYMENT_PROVIDER is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from sellerdesk.config import Settings
from sellerdesk.errors import AppError, ServiceUnavailable
from sellerdesk.payments.providers import IntentInfo, intent_info_from_stripe

TOLERANCE_SECONDS = 300


class WebhookRejected(AppError):
    status_code = 400
    code = "payment_error"
    message = "The webhook signature is missing, invalid or too old."


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event says about one intent; `reread` when it is only a summary."""

    info: IntentInfo
    reread: bool = False
    reference: str | None = None  # a Checkout Session's client_reference_id: our purpose


def observe(event_type: str, obj: dict[str, Any]) -> Observation | None:
    """Our view of a handled event's object; None for types we do not handle."""
    if event_type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        info = intent_info_from_stripe(obj)
        if event_type == "payment_intent.payment_failed" and info.status == "pending":
            info = replace(info, status="failed")
        return Observation(info)
    if event_type == "charge.refunded":
        intent_id = obj.get("payment_intent")
        if not isinstance(intent_id, str):
            return None
        # A refunded charge was captured: it proves the intent succeeded, so a refund that
        # arrives before payment_intent.succeeded still ends right.
        captured = obj.get("status") == "succeeded" or bool(obj.get("paid"))
        return Observation(
            IntentInfo(
                id=intent_id,
                status="succeeded" if captured else "pending",
                amount=int(obj.get("amount") or 0),
                currency=str(obj.get("currency") or "").lower(),
                amount_refunded=int(obj.get("amount_refunded") or 0),
            )
        )
    if event_type == "checkout.session.completed":
        intent_id = obj.get("payment_intent")
        if obj.get("payment_status") != "paid" or not isinstance(intent_id, str):
            return None
        return Observation(
            IntentInfo(
                id=intent_id,
                status="succeeded",
                amount=int(obj.get("amount_total") or 0),
                currency=str(obj.get("currency") or "").lower(),
            ),
            reread=True,
            reference=reference
            if isinstance(reference := obj.get("client_reference_id"), str)
            else None,
        )
    return None


def verify_event(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event, once its Stripe-Signature is valid for the raw body and at most 300 s old."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # 503, not 400: Stripe retries 5xx, so events sent while unconfigured are not lost.
        raise ServiceUnavailable("Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET).")
    import stripe  # lazy: see StripeProvider

    try:
        stripe.WebhookSignature.verify_header(
            payload, signature, secret, tolerance=TOLERANCE_SECONDS
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise WebhookRejected() from exc
    except ValueError as exc:
        raise WebhookRejected("The webhook body is not JSON.") from exc
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise WebhookRejected("The webhook body is not a Stripe event.")
    return event
