"""Request and response bodies of checkout and orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from sellerdesk.kit.money import Money
from sellerdesk.kit.types import InputModel, OutputModel, Text
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
    created_at: datetime
    updated_at: datetime


class OrderStatusUpdate(InputModel):
    status: Literal["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
