"""Request and response bodies of the payment routes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import field_validator

from sellerdesk.kit.money import Money
from sellerdesk.kit.types import Id, InputModel, OutputModel
from sellerdesk.orders.schemas import OrderPublic


class PaymentIntentCreate(InputModel):
    order_id: Id


class PaymentIntentPublic(OutputModel):
    client_secret: str
    payment_intent_id: str


class PaymentConfirmed(OutputModel):
    message: str
    order: OrderPublic


class RefundCreate(InputModel):
    order_id: Id
    amount: Money | None = None  # None: everything not yet refunded

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValueError("a refund amount must be greater than 0")
        return value


class RefundPublic(OutputModel):
    id: int
    order_id: int
    payment_intent_id: str
    amount: Money
    refunded_total: Money
    captured_total: Money
    currency: str
    status: str
    created_at: datetime
    order: OrderPublic


class WebhookReceived(OutputModel):
    received: bool = True
    result: Literal["applied", "duplicate", "ignored", "unmatched"]
