"""Credit request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from sellerdesk.kit.money import Money
from sellerdesk.kit.types import Id, InputModel, OutputModel, Text

MAX_CREDITS = 1_000_000_000
CreditAmount = Annotated[int, Field(ge=-MAX_CREDITS, le=MAX_CREDITS)]
PositiveCredits = Annotated[int, Field(ge=1, le=MAX_CREDITS)]


class CreditBalance(OutputModel):
    balance: int
    lifetime_purchased: int
    lifetime_spent: int


class LedgerEntry(OutputModel):
    id: int
    amount: int
    balance_after: int
    kind: Literal["purchase", "charge", "refund", "grant", "adjustment"]
    reference: str | None
    endpoint: str | None
    created_at: datetime


class GrantCreate(InputModel):
    user_id: Id
    amount: CreditAmount
    reason: Annotated[Text, Field(min_length=1, max_length=255)]

    @field_validator("amount")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("amount must not be 0")
        return value


class GrantResult(LedgerEntry):
    user_id: int
    balance: int


class PackPublic(OutputModel):
    id: int
    name: str
    credits: int
    price: Money
    currency: str


class PackAdmin(PackPublic):
    is_active: bool
    created_at: datetime
    updated_at: datetime


Currency = Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]


class PackCreate(InputModel):
    name: Annotated[Text, Field(min_length=1, max_length=100)]
    credits: PositiveCredits
    price: Money
    currency: Currency | None = None
    is_active: bool = True


class PackUpdate(InputModel):
    name: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    credits: PositiveCredits | None = None
    price: Money | None = None
    currency: Currency | None = None
    is_active: bool | None = None


class PricePublic(OutputModel):
    endpoint: str
    credits: int
    description: str


class PriceUpdate(InputModel):
    credits: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    description: Annotated[Text, Field(max_length=255)] | None = None


class PurchaseCreate(InputModel):
    pack_id: Id


class PurchaseStarted(OutputModel):
    purchase_id: int
    client_secret: str | None
    payment_intent_id: str | None
    credits: int
    amount: Money
    currency: str
    status: str


class PurchasePublic(OutputModel):
    id: int
    pack_id: int
    credits: int
    status: Literal["pending", "completed", "failed", "refunded"]
    payment_intent_id: str | None
    amount: Money
    currency: str
    created_at: datetime


class PurchaseConfirmed(OutputModel):
    message: str
    purchase: PurchasePublic
    balance: int


class CreditAlertSettings(OutputModel):
    """The low-balance warning: one email each time a charge takes the balance to or below the
    effective threshold."""

    enabled: bool
    threshold: int | None = Field(description="Your own threshold; null: the default applies.")
    default_threshold: int | None = Field(
        description="10% of the last pack you bought; null before any purchase."
    )
    effective_threshold: int | None = Field(
        description="The threshold in force; null when off or when there is none yet."
    )


class CreditAlertUpdate(InputModel):
    """Replaces the settings: an omitted `threshold` means the default (10% of the last pack)."""

    enabled: bool = True
    threshold: Annotated[int, Field(ge=0, le=MAX_CREDITS)] | None = None


class UsageDay(OutputModel):
    """One endpoint's paid calls on one UTC day."""

    date: date
    endpoint: str = Field(description="As in /credits/pricing: asin_lookup, fnsku_conversion.")
    calls: int = Field(description="Requests answered 200; a batch is one, a free repeat counts.")
    credits: int = Field(description="That day's charges minus refunds.")


class UsageReport(OutputModel):
    """The caller's usage in an inclusive range of UTC days; days without calls left out."""

    model_config = ConfigDict(populate_by_name=True)

    first: date = Field(alias="from")
    last: date = Field(alias="to")
    items: list[UsageDay]
