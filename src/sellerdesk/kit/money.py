"""Money: `Decimal` with two places in, a two-place string out; never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

MAX_AMOUNT = Decimal("9999999999.99")  # what Numeric(12, 2) holds
CENTS = Decimal("0.01")


def parse_amount(value: Any) -> Decimal:
    """A non-negative amount with at most two places, from a string, int or float."""
    if isinstance(value, bool):
        raise ValueError('an amount must be a decimal string such as "19.99"')
    if isinstance(value, float):
        value = repr(value)  # the shortest text that round-trips, e.g. 12.5 -> "12.5"
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise ValueError('an amount must be a decimal string such as "19.99"') from exc
    if not amount.is_finite():
        raise ValueError("an amount must be a finite number")
    if amount < 0:
        raise ValueError("an amount must not be negative")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError("an amount may have at most two decimal places")
    if amount > MAX_AMOUNT:
        raise ValueError(f"an amount must not exceed {MAX_AMOUNT}")
    return amount.quantize(CENTS)


def format_amount(amount: Decimal) -> str:
    return str(amount.quantize(CENTS, rounding=ROUND_HALF_UP))


def to_minor_units(amount: Decimal) -> int:
    """19.99 -> 1999 (two-decimal currencies)."""
    return int((amount.quantize(CENTS) * 100).to_integral_exact())


def from_minor_units(minor: int) -> Decimal:
    return (Decimal(minor) / 100).quantize(CENTS)


Money = Annotated[
    Decimal,
    BeforeValidator(parse_amount),
    PlainSerializer(format_amount, return_type=str, when_used="always"),
    # In: at most two places and at most what Numeric(12, 2) holds (a JSON number is taken too).
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$",
            "examples": ["19.99"],
            "description": "A decimal string with at most two places.",
        },
        mode="validation",
    ),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\d+\.\d{2}$", "examples": ["19.99"]},
        mode="serialization",
    ),
]
"""A money amount: accepts "12.5" or 12.5, stores Decimal("12.50"), shows "12.50"."""

SignedMoney = Annotated[
    Decimal,
    PlainSerializer(format_amount, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["-4.50"]}),
]
"""An amount that may be negative (a net figure such as a day's revenue), output only."""
