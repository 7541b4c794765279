"""Amazon product codes as the contract states them, shared by the catalog and the data API.

- ASIN: `B0` + 8 of `[A-Z0-9]`, or an ISBN-10 whose mod-11 check digit is right (`X` = 10,
  allowed only as the check character), since a book's ASIN is its ISBN-10.
- FNSKU: `X0` + 8 of `[A-Z0-9]`, or a valid ASIN (stickerless units carry their ASIN as FNSKU).

Input is trimmed and upper-cased first (`normalize`); the `*_INPUT_PATTERN`s document what may be
sent before that, for OpenAPI.
"""

from __future__ import annotations

import re

_B0_ASIN = re.compile(r"B0[A-Z0-9]{8}")
_X0_FNSKU = re.compile(r"X0[A-Z0-9]{8}")
_ISBN10 = re.compile(r"[0-9]{9}[0-9X]")

# What the schema documents: the code as it may be sent, before trimming and upper-casing
# (surrounding spaces and lower case are accepted); the ISBN-10 check digit is checked too.
_SPACE = r"[ \t\r\n]*"
ASIN_INPUT_PATTERN = rf"^{_SPACE}(?:[Bb]0[A-Za-z0-9]{{8}}|[0-9]{{9}}[0-9Xx]){_SPACE}$"
FNSKU_INPUT_PATTERN = rf"^{_SPACE}(?:[XxBb]0[A-Za-z0-9]{{8}}|[0-9]{{9}}[0-9Xx]){_SPACE}$"


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
