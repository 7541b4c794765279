"""Request and response bodies of the Amazon data endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from sellerdesk.amazon.identifiers import Asin, Fnsku, Marketplace
from sellerdesk.kit.types import InputModel

Source = Literal["catalog", "inventory_report", "sp-api"]
"""Where an answer came from: this store's catalog, the user's uploaded report, or Amazon."""

MAX_BATCH = 1000


class AsinQuery(InputModel):
    asin: Asin
    marketplace: Marketplace = "US"


class FnskuQuery(InputModel):
    fnsku: Fnsku


class FnskuBatchQuery(InputModel):
    # Items are checked one by one (status `invalid`), not refused as a whole; the length cap
    # only keeps absurd strings out.
    fnskus: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=MAX_BATCH)


class Measure(BaseModel):
    """A dimension or weight; the value is a decimal string, never a float."""

    value: str
    unit: str | None = None


class Dimensions(BaseModel):
    """`height`, `length`, `width`, `weight` of the item and of its package."""

    item: dict[str, Measure] | None = None
    package: dict[str, Measure] | None = None


class SalesRank(BaseModel):
    title: str
    rank: int
    category_id: str | None = None
    link: str | None = None


class AsinProduct(BaseModel):
    """Product data for one ASIN; every field is present, null or empty when unknown."""

    asin: str
    marketplace: str
    title: str | None
    brand: str | None
    images: list[str]
    bullet_points: list[str]
    category: str | None
    price: str | None = Field(description="Decimal string with two places, or null.")
    currency: str | None = Field(description="ISO 4217, lower-case; null when there is no price.")
    dimensions: Dimensions | None
    sales_rank: SalesRank | None = Field(description="The top-level (display group) rank.")
    sales_ranks: list[SalesRank] = Field(description="Every rank Amazon reports, best first.")
    fetched_at: datetime
    source: Source


class FnskuResult(BaseModel):
    fnsku: str
    asin: str
    sku: str | None = Field(
        description="The seller SKU stocked under this FNSKU; when there are several, the first "
        "in code-point order (see `skus`)."
    )
    skus: list[str] = Field(
        default_factory=list,
        description="Every seller SKU known under this FNSKU, in code-point order.",
    )
    title: str | None
    source: Source


class BatchItem(BaseModel):
    fnsku: str
    asin: str | None
    status: Literal["found", "not_found", "invalid"]


class FnskuBatchResult(BaseModel):
    results: list[BatchItem]
    charged: int = Field(description="Credits charged for this batch.")


class ReportRowError(BaseModel):
    row: int = Field(description="Line number in the file; the header is line 1.")
    message: str


class InventoryReportResult(BaseModel):
    created: int
    updated: int
    skipped: int = Field(description="Rows not imported (each is listed in errors, up to a cap).")
    errors: list[ReportRowError]
