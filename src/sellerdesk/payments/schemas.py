"""Response bodies of the payments domain (an intent to confirm, a received webhook)."""

from __future__ import annotations

from typing import Literal

from sellerdesk.kit.types import OutputModel


class PaymentIntentPublic(OutputModel):
    client_secret: str
    payment_intent_id: str


class WebhookReceived(OutputModel):
    received: bool = True
    result: Literal["applied", "duplicate", "ignored", "unmatched"]
