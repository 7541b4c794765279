"""Request and response bodies of the catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, computed_field, model_validator

from sellerdesk.catalog.identifiers import (
    MAX_URL_LENGTH,
    SLUG_PATTERN,
    check_image_url,
    check_slug,
    normalize_asin,
)
from sellerdesk.kit.identifiers import ASIN_INPUT_PATTERN
from sellerdesk.kit.money import Money
from sellerdesk.kit.types import Id, InputModel, OutputModel, Text

MAX_INT = 2**31 - 1  # what an INTEGER column holds

Slug = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": SLUG_PATTERN}),
    AfterValidator(check_slug),
]
CategoryName = Annotated[Text, Field(min_length=1, max_length=200)]
ProductName = Annotated[Text, Field(min_length=1, max_length=300)]
Description = Annotated[Text, Field(max_length=20_000)]
Quantity = Annotated[int, Field(ge=0, le=MAX_INT)]
Currency = Annotated[
    str, Field(pattern=r"^[A-Za-z]{3}$", examples=["usd"]), AfterValidator(str.lower)
]
ImageUrl = Annotated[
    str,
    Field(json_schema_extra={"format": "uri", "maxLength": MAX_URL_LENGTH}),
    AfterValidator(check_image_url),
]
Images = Annotated[list[ImageUrl], Field(max_length=20)]
Asin = Annotated[
    str,
    Field(
        max_length=20,
        examples=["B08N5WRWNW"],
        json_schema_extra={"pattern": ASIN_INPUT_PATTERN},
        description="`B0` + 8 letters/digits, or an ISBN-10; trimmed and upper-cased first.",
    ),
    AfterValidator(normalize_asin),
]


def _strip_sku(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("a sku must not be blank")
    return value


Sku = Annotated[Text, Field(min_length=1, max_length=100), AfterValidator(_strip_sku)]

ProductSort = Literal["name", "-name", "price", "-price", "created_at", "-created_at"]
_SORT_NAMES = ["NAME", "NAME_DESC", "PRICE", "PRICE_DESC", "CREATED_AT", "CREATED_AT_DESC"]
SORT_ENUM_NAMES: dict[str, Any] = {"x-enum-varnames": _SORT_NAMES, "x-enumNames": _SORT_NAMES}
"""Readable names of the sort values, in order, for generated clients (`PRICE_DESC`)."""


def _refuse_nulls(data: Any, fields: tuple[str, ...]) -> Any:
    """PATCH bodies: a field that cannot be empty may be left out, but not set to null."""
    if isinstance(data, dict):
        nulls = [name for name in fields if name in data and data[name] is None]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} may not be null")
    return data


# --------------------------------------------------------------------------- categories


class CategoryCreate(InputModel):
    name: CategoryName
    slug: Slug
    description: Description | None = None
    parent_id: Id | None = None


class CategoryUpdate(InputModel):
    name: CategoryName | None = None
    slug: Slug | None = None
    description: Description | None = None
    parent_id: Id | None = None
    is_active: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data, ("name", "slug", "is_active"))


class CategoryPublic(OutputModel):
    """A category as the admin routes return it."""

    id: int
    name: str
    slug: str
    description: str | None
    parent_id: int | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CategoryNode(BaseModel):
    """A category of the public tree with its active sub-categories."""

    id: int
    name: str
    slug: str
    description: str | None
    parent_id: int | None
    children: list[CategoryNode]


# --------------------------------------------------------------------------- products


class ProductCreate(InputModel):
    name: ProductName
    description: Description | None = None
    price: Money
    currency: Currency | None = None
    stock_quantity: Quantity = 0
    category_id: Id | None = None
    sku: Sku
    asin: Asin | None = None
    images: Images = Field(default_factory=list)
    low_stock_threshold: Quantity = 5
    is_active: bool = True


class ProductUpdate(InputModel):
    name: ProductName | None = None
    description: Description | None = None
    price: Money | None = None
    currency: Currency | None = None
    stock_quantity: Quantity | None = None
    category_id: Id | None = None
    sku: Sku | None = None
    asin: Asin | None = None
    images: Images | None = None
    low_stock_threshold: Quantity | None = None
    is_active: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return _refuse_nulls(
            data,
            (
                "name",
                "price",
                "currency",
                "stock_quantity",
                "sku",
                "images",
                "low_stock_threshold",
                "is_active",
            ),
        )


class ProductPublic(OutputModel):
    id: int
    name: str
    description: str | None
    price: Money
    currency: str
    stock_quantity: int
    low_stock_threshold: int
    category_id: int | None
    sku: str
    asin: str | None
    images: list[str]
    is_active: bool
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def in_stock(self) -> bool:
        return self.stock_quantity > 0


class ProductFilters(BaseModel):
    """The public listing's filters, parsed from the query string."""

    category: str | None = None
    q: str | None = None
    min_price: Money | None = None
    max_price: Money | None = None
    in_stock: bool | None = None
    sort: ProductSort = "-created_at"
    include_inactive: bool = False


# --------------------------------------------------------------------------- import


class ImportRowError(BaseModel):
    row: int = Field(description="The row in the file; the header is row 1.")
    message: str


class ImportReport(BaseModel):
    """What an import did; when `errors` is not empty nothing was written."""

    created: int
    updated: int
    errors: list[ImportRowError]
