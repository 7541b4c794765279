"""Public catalog responses cached as their final JSON bytes.

Every key lives under the `catalog` namespace; a write bumps the namespace version after its
commit, so no cached page survives it. The version is read *before* the database is, so a page
built from data older than a write is stored under the old version and can never be served.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import Response

from sellerdesk.kit.cache import Cache

NAMESPACE = "catalog"


def digest(parts: dict[str, Any]) -> str:
    """A short stable key for a set of query parameters."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def cached(
    cache: Cache, key: str, ttl: int, build: Callable[[], Awaitable[bytes]]
) -> tuple[bytes, bool]:
    """The cached body for `key`, or `build()` stored under it; (body, hit)."""
    prefix = await cache.namespace(NAMESPACE)
    full_key = f"{prefix}:{key}"
    body = await cache.get(full_key)
    if body is not None:
        return body, True
    body = await build()
    await cache.set(full_key, body, ttl)
    return body, False


def json_response(body: bytes, *, hit: bool | None = None) -> Response:
    """The bytes as they are; `X-Cache` says whether they came from the cache."""
    headers = {} if hit is None else {"X-Cache": "hit" if hit else "miss"}
    return Response(content=body, media_type="application/json", headers=headers)
