"""A small byte cache: Redis when configured, this process's memory otherwise.

Groups of keys are invalidated together by bumping a namespace version, so a write never has to
find every cached page it affects.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Annotated, Protocol

import structlog
from fastapi import Depends, Request
from redis.asyncio import Redis

log = structlog.get_logger(__name__)


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: int) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def namespace(self, name: str) -> str:
        """The current key prefix of a namespace (changes when it is invalidated)."""
        ...

    async def invalidate(self, name: str) -> None:
        """Make every key built from `namespace(name)` unreachable."""
        ...


class MemoryCache:
    """A bounded in-process LRU with per-key expiry (single process only)."""

    def __init__(self, prefix: str, max_items: int = 10_000) -> None:
        self.prefix = prefix
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._versions: dict[str, int] = {}

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        self._items[key] = (time.monotonic() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def namespace(self, name: str) -> str:
        return f"{self.prefix}:{name}:v{self._versions.get(name, 0)}"

    async def invalidate(self, name: str) -> None:
        self._versions[name] = self._versions.get(name, 0) + 1


class RedisCache:
    """Shared by every process; a Redis error degrades to a miss, never to a failed request."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        # Invalidations Redis missed (unreachable, its data kept): bumped before the next read,
        # or every process would serve the old pages until they expire.
        self._missed: set[str] = set()

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.redis.get(key)
        except Exception as exc:
            log.warning("cache_unavailable", op="get", error=type(exc).__name__)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        try:
            await self.redis.set(key, value, ex=ttl)
        except Exception as exc:
            log.warning("cache_unavailable", op="set", error=type(exc).__name__)

    async def delete(self, key: str) -> None:
        try:
            await self.redis.delete(key)
        except Exception as exc:
            log.warning("cache_unavailable", op="delete", error=type(exc).__name__)

    async def namespace(self, name: str) -> str:
        try:
            if self._missed:
                await self._bump_missed()
            version = await self.redis.get(f"{self.prefix}:ns:{name}")
        except Exception as exc:
            log.warning("cache_unavailable", op="namespace", error=type(exc).__name__)
            version = None
        return f"{self.prefix}:{name}:v{int(version or 0)}"

    async def invalidate(self, name: str) -> None:
        # Raised, not swallowed (the after-commit runner logs it), and remembered: the next
        # `namespace` call of this process bumps the version once Redis answers again.
        try:
            await self.redis.incr(f"{self.prefix}:ns:{name}")
        except Exception:
            self._missed.add(name)
            raise

    async def _bump_missed(self) -> None:
        for name in sorted(self._missed):
            await self.redis.incr(f"{self.prefix}:ns:{name}")
            self._missed.discard(name)


def create_cache(redis: Redis | None, prefix: str) -> Cache:
    return (
        RedisCache(redis, f"{prefix}:cache")
        if redis is not None
        else MemoryCache(f"{prefix}:cache")
    )


def _app_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(_app_cache)]
"""The app's cache, for routes whose writes must purge cached pages."""
