"""Inventory bodies: adjustments in, movements and low-stock products out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, field_validator

from sellerdesk.kit.types import InputModel, OutputModel, Text

MAX_DELTA = 1_000_000_000  # stock is an INTEGER column


class StockAdjust(InputModel):
    delta: Annotated[int, Field(ge=-MAX_DELTA, le=MAX_DELTA)]
    reason: Annotated[Text, Field(min_length=1, max_length=500)]

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be 0")
        return value


class StockLevelPublic(OutputModel):
    product_id: int
    stock_quantity: int
    low_stock_threshold: int


class StockMovementPublic(OutputModel):
    id: int
    product_id: int
    delta: int
    stock_after: int
    reason: str
    note: str | None
    order_id: int | None
    user_id: int | None
    created_at: datetime


class LowStockProduct(OutputModel):
    id: int
    name: str
    sku: str
    stock_quantity: int
    low_stock_threshold: int
    is_active: bool
