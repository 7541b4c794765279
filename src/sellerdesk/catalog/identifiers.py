"""Catalog identifiers: category slugs, ASINs and image URLs.

The ASIN rule is the contract's, shared with the paid ASIN lookup (`kit.identifiers`): `B0` + 8
`[A-Z0-9]`, or an ISBN-10 whose mod-11 check digit is right. Input is trimmed and upper-cased first.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sellerdesk.kit.identifiers import is_asin, normalize

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_SLUG = re.compile(SLUG_PATTERN)
MAX_URL_LENGTH = 2000


def normalize_asin(value: str) -> str:
    """The ASIN trimmed and upper-cased; ValueError when it is not a valid ASIN."""
    asin = normalize(value)
    if is_asin(asin):
        return asin
    raise ValueError("an ASIN is 'B0' followed by 8 letters or digits, or a valid ISBN-10")


def check_slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            "a slug is lower-case letters and digits in groups joined by single hyphens"
        )
    return value


def check_image_url(value: str) -> str:
    """An absolute http(s) URL with a host; we store it as given and never fetch it."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"an image URL may have at most {MAX_URL_LENGTH} characters")
    if any(char.isspace() or ord(char) < 32 for char in value):
        raise ValueError("an image URL may not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError("an image URL must be a valid http(s) URL") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("an image URL must be an absolute http:// or https:// URL")
    return value
