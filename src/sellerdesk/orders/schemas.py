"""Request and response bodies of checkout and orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from sellerdesk.kit.money import Money
from sellerdesk.kit.types import Id, InputModel, OutputModel, Text
from sellerdesk.orders.countries import ISO_3166_ALPHA2
from sellerdesk.orders.state import OrderStatus, PaymentStatus


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in ISO_3166_ALPHA2:
        raise ValueError("country must be an ISO 3166-1 alpha-2 code such as 'US'")
    return code


Line = Annotated[Text, Field(min_length=1, max_length=200)]
Country = Annotated[
    Text,
    Field(
        min_length=2,
        max_length=2,
        json_schema_extra={"pattern": "^[A-Za-z]{2}$"},
        description="ISO 3166-1 alpha-2, e.g. `US` (case-insensitive).",
    ),
    AfterValidator(_country),
]


class Address(InputModel):
    name: Line
    line1: Line
    line2: Line | None = None
    city: Line
    state: Line | None = None
    postal_code: Annotated[Text, Field(min_length=1, max_length=20)]
    country: Country


class CheckoutIn(InputModel):
    shipping_address: Address
    billing_address: Address | None = None


class OrderItemPublic(OutputModel):
    product_id: int
    name: str
    sku: str
    quantity: int
    unit_price: Money
    line_total: Money


class OrderPublic(OutputModel):
    id: int
    user_id: int
    status: OrderStatus
    payment_status: PaymentStatus
    total_amount: Money
    currency: str
    items: list[OrderItemPublic]
    shipping_address: Address
    billing_address: Address | None
    payment_intent_id: str | None = None  # filled from the payment table once one exists
    carrier: str | None = None
    tracking_number: str | None = None
    created_at: datetime
    updated_at: datetime


ShippingText = Annotated[Text, Field(min_length=1, max_length=100)]


class OrderStatusUpdate(InputModel):
    status: Literal["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
    carrier: ShippingText | None = None  # with `shipped` only
    tracking_number: ShippingText | None = None  # with `shipped` only

    @model_validator(mode="after")
    def _tracking_only_when_shipping(self) -> OrderStatusUpdate:
        if self.status != "shipped" and (self.carrier or self.tracking_number):
            raise ValueError("carrier and tracking_number go with status 'shipped' only")
        return self


# --------------------------------------------------------------------------- paying for an order


class PaymentIntentCreate(InputModel):
    order_id: Id


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
