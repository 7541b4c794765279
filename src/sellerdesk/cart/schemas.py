"""Cart bodies: quantities in, live prices out."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sellerdesk.kit.money import Money
from sellerdesk.kit.types import InputModel, OutputModel


class CartItemSet(InputModel):
    quantity: Annotated[int, Field(ge=1, le=999)]


class CartItemPublic(OutputModel):
    product_id: int
    name: str
    unit_price: Money
    quantity: int
    line_total: Money
    available: bool  # false once the product is no longer on sale (checkout would refuse it)


class CartPublic(OutputModel):
    items: list[CartItemPublic]
    subtotal: Money
    currency: str
