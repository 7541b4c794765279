"""Amazon identifiers in request bodies: the rules live in `kit.identifiers` (the catalog uses
them too); this module makes them pydantic types.

Input is trimmed and upper-cased first. `Asin`, `Fnsku` and `Marketplace` are pydantic types, so
a request body holding a bad code is refused with 422 `validation_error`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from sellerdesk.amazon.regions import MARKETPLACE_ALIASES, MarketplaceCode
from sellerdesk.kit.identifiers import (
    ASIN_INPUT_PATTERN,
    FNSKU_INPUT_PATTERN,
    is_asin,
    is_fnsku,
    isbn10_check_ok,
    normalize,
    parse_asin,
    parse_fnsku,
)

__all__ = [
    "Asin",
    "Fnsku",
    "Marketplace",
    "is_asin",
    "is_fnsku",
    "isbn10_check_ok",
    "normalize",
    "parse_asin",
    "parse_fnsku",
]


def _normalize_input(value: Any) -> Any:
    return normalize(value) if isinstance(value, str) else value


def _check_asin(code: str) -> str:
    if not is_asin(code):
        raise ValueError("not a valid ASIN (B0 + 8 letters/digits, or an ISBN-10)")
    return code


def _check_fnsku(code: str) -> str:
    if not is_fnsku(code):
        raise ValueError("not a valid FNSKU (X0 + 8 letters/digits, or an ASIN)")
    return code


Asin = Annotated[
    str,
    BeforeValidator(_normalize_input),
    Field(
        examples=["B0EXAMPLE1"],
        json_schema_extra={"pattern": ASIN_INPUT_PATTERN},
        description="`B0` + 8 letters/digits, or an ISBN-10; trimmed and upper-cased first.",
    ),
    AfterValidator(_check_asin),
]
"""An ASIN in a request body: normalised, then validated (422 otherwise)."""

Fnsku = Annotated[
    str,
    BeforeValidator(_normalize_input),
    Field(
        examples=["X00EXAMPL1"],
        json_schema_extra={"pattern": FNSKU_INPUT_PATTERN},
        description="`X0` + 8 letters/digits, or an ASIN; trimmed and upper-cased first.",
    ),
    AfterValidator(_check_fnsku),
]
"""An FNSKU in a request body: normalised, then validated (422 otherwise)."""


def _normalize_marketplace(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    code = normalize(value)
    return MARKETPLACE_ALIASES.get(code, code)


Marketplace = Annotated[MarketplaceCode, BeforeValidator(_normalize_marketplace)]
"""A marketplace code of Amazon's table (`US`, `UK`, `DE`, `JP`, ...; see `regions.py`),
case-insensitive; `GB` is read as `UK`."""
