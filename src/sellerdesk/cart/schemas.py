"""Cart bodies: quantities in, live prices out."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, PlainSerializer, WithJsonSchema

from sellerdesk.kit.money import Money, format_amount
from sellerdesk.kit.types import InputModel, OutputModel

# A computed amount: shown like Money but not bounded by what one price may be (999 units of
# the dearest product exceed it), so a large cart never fails to render.
Amount = Annotated[
    Decimal,
    PlainSerializer(format_amount, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+\.\d{2}$", "examples": ["19.99"]}),
]


class CartItemSet(InputModel):
    quantity: Annotated[int, Field(ge=1, le=999)]


class CartItemPublic(OutputModel):
    product_id: int
    name: str
    unit_price: Money
    quantity: int
    line_total: Amount
    available: bool  # false once the product is no longer on sale (checkout would refuse it)


class CartPublic(OutputModel):
    items: list[CartItemPublic]
    subtotal: Amount
    currency: str
