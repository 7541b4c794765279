"""Amazon identifiers: normalisation and validation exactly as the contract states them.

- ASIN: `B0` + 8 of `[A-Z0-9]`, or an ISBN-10 whose mod-11 check digit is right (`X` = 10,
  allowed only as the check character), since a book's ASIN is its ISBN-10.
- FNSKU: `X0` + 8 of `[A-Z0-9]`, or a valid ASIN (stickerless units carry their ASIN as FNSKU).

Input is trimmed and upper-cased first. `Asin`, `Fnsku` and `Marketplace` are pydantic types, so
a request body holding a bad code is refused with 422 `validation_error`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field

_B0_ASIN = re.compile(r"B0[A-Z0-9]{8}")
_X0_FNSKU = re.compile(r"X0[A-Z0-9]{8}")
_ISBN10 = re.compile(r"[0-9]{9}[0-9X]")

MarketplaceCode = Literal["US", "CA", "MX", "UK", "DE", "FR", "IT", "ES", "JP", "AU"]

MARKETPLACE_IDS: dict[str, str] = {
    "US": "ATVPDKIKX0DER",
    "CA": "A2EUQ1WTGCTBG2",
    "MX": "A1AM78C64UM0Y8",
    "UK": "A1F83G8C2ARO7P",
    "DE": "A1PA6795UKMFR9",
    "FR": "A13V1IB3VIYZZH",
    "IT": "APJ6JRA9NG5V4",
    "ES": "A1RKKUPIHCS9HS",
    "JP": "A1VC38T7YXB528",
    "AU": "A39IBJ37TRP1C6",
}
assert set(MARKETPLACE_IDS) == set(get_args(MarketplaceCode))


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


# What the schema documents: the code as it may be sent, before trimming and upper-casing
# (surrounding spaces and lower case are accepted); the ISBN-10 check digit is checked too.
_SPACE = r"[ \t\r\n]*"
ASIN_INPUT_PATTERN = rf"^{_SPACE}(?:[Bb]0[A-Za-z0-9]{{8}}|[0-9]{{9}}[0-9Xx]){_SPACE}$"
FNSKU_INPUT_PATTERN = rf"^{_SPACE}(?:[XxBb]0[A-Za-z0-9]{{8}}|[0-9]{{9}}[0-9Xx]){_SPACE}$"

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

Marketplace = Annotated[MarketplaceCode, BeforeValidator(_normalize_input)]
"""A marketplace code of the SP-API table (`US`, `UK`, `DE`, ...), case-insensitive."""
