"""Amazon identifiers: normalisation and validation exactly as the contract states them.

- ASIN: `B0` + 8 of `[A-Z0-9]`, or an ISBN-10 whose mod-11 check digit is right (`X` = 10,
  allowed only as the check character), since a book's ASIN is its ISBN-10.
- FNSKU: `X0` + 8 of `[A-Z0-9]`, or a valid ASIN (stickerless units carry their ASIN as FNSKU).

Input is trimmed and upper-cased first. `Asin`, `Fnsku` and `Marketplace` are pydantic types, so
a request body holding a bad code is refused with 422 `validation_error`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from sellerdesk.amazon.regions import MARKETPLACE_ALIASES, MarketplaceCode

_B0_ASIN = re.compile(r"B0[A-Z0-9]{8}")
_X0_FNSKU = re.compile(r"X0[A-Z0-9]{8}")
_ISBN10 = re.compile(r"[0-9]{9}[0-9X]")


def normalize(code: str) -> str:
    """Trimmed and upper-cased, the form every code is stored and compared in."""
    return code.strip().upper()


def isbn10_check_ok(code: str) -> bool:
    """True when `code` is 9 digits plus a correct mod-11 check character (0-9 or X)."""
    if not _ISBN10.fullmatch(code):
        return False
    total = sum((10 - i) * int(ch) for i, ch in enumerate(code[:9]))
    check = 10 if code[9] == "X" else int(code[9])
    return (total + check) % 11 == 0


def is_asin(code: str) -> bool:
    """Whether an already normalised code is a valid ASIN."""
    return bool(_B0_ASIN.fullmatch(code)) or isbn10_check_ok(code)


def is_fnsku(code: str) -> bool:
    """Whether an already normalised code is a valid FNSKU."""
    return bool(_X0_FNSKU.fullmatch(code)) or is_asin(code)


def parse_asin(raw: str) -> str | None:
    """The normalised ASIN, or None when `raw` is not one."""
    code = normalize(raw)
    return code if is_asin(code) else None


def parse_fnsku(raw: str) -> str | None:
    """The normalised FNSKU, or None when `raw` is not one."""
    code = normalize(raw)
    return code if is_fnsku(code) else None


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
    Field(max_length=10, examples=["B0EXAMPLE1"]),
    AfterValidator(_check_asin),
]
"""An ASIN in a request body: normalised, then validated (422 otherwise)."""

Fnsku = Annotated[
    str,
    BeforeValidator(_normalize_input),
    Field(max_length=10, examples=["X00EXAMPL1"]),
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
