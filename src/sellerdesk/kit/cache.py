"""A small byte cache: Redis when configured, this process's memory otherwise.

Groups of keys are invalidated together by bumping a namespace version, so a write never has to
find every cached page it affects.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import structlog
from fastapi import Depends, Request
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

PINNED_KEY = "cache_versions"  # scope["state"] key: namespaces read by CachedReadMiddleware


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: int) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def namespace(self, name: str) -> str:
        """The current key prefix of a namespace (changes when it is invalidated)."""
        ...

    async def version(self, name: str) -> int | None:
        """The namespace's current version; None when the storage cannot be read."""
        ...

    def namespace_at(self, name: str, version: int) -> str:
        """The key prefix of a namespace at `version`."""
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
        return self.namespace_at(name, self._versions.get(name, 0))

    async def version(self, name: str) -> int | None:
        return self._versions.get(name, 0)

    def namespace_at(self, name: str, version: int) -> str:
        return f"{self.prefix}:{name}:v{version}"

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
        return self.namespace_at(name, await self._version(name, "namespace") or 0)

    async def version(self, name: str) -> int | None:
        return await self._version(name, "version")

    async def _version(self, name: str, op: str) -> int | None:
        try:
            if self._missed:
                await self._bump_missed()
            version = await self.redis.get(f"{self.prefix}:ns:{name}")
        except Exception as exc:
            log.warning("cache_unavailable", op=op, error=type(exc).__name__)
            return None
        return int(version or 0)

    def namespace_at(self, name: str, version: int) -> str:
        return f"{self.prefix}:{name}:v{version}"

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


class PinnedCache:
    """The app's cache with some namespaces read once, when the request arrived (by
    `CachedReadMiddleware`): the route builds its keys from the version the middleware saw."""

    def __init__(self, cache: Cache, versions: dict[str, int]) -> None:
        self.cache = cache
        self.versions = versions

    async def get(self, key: str) -> bytes | None:
        return await self.cache.get(key)

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self.cache.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.cache.delete(key)

    async def namespace(self, name: str) -> str:
        version = self.versions.get(name)
        if version is None:
            return await self.cache.namespace(name)
        return self.cache.namespace_at(name, version)

    async def version(self, name: str) -> int | None:
        return await self.cache.version(name)

    def namespace_at(self, name: str, version: int) -> str:
        return self.cache.namespace_at(name, version)

    async def invalidate(self, name: str) -> None:
        await self.cache.invalidate(name)


def request_cache(request: Request) -> Cache:
    """The app's cache, with the namespaces `CachedReadMiddleware` pinned for this request."""
    cache: Cache = request.app.state.cache
    pinned = request.scope.get("state", {}).get(PINNED_KEY)
    return PinnedCache(cache, pinned) if pinned else cache


@dataclass(slots=True)
class _Page:
    body: bytes
    expires: float
    route: object


class SharedReads:
    """Concurrent requests share reads of a namespace version, never an older read.

    One read is on the wire at a time. A request that arrives while one is on the wire waits
    for the next read, which starts when that one ends, so it is answered by a read sent after
    it arrived: it sees every write that completed before it arrived, as with a read of its own.
    Under load one round trip serves every request that arrived during the previous one.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: asyncio.Future[int | None] | None = None
        self._queued: asyncio.Future[int | None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def version(self, cache: Cache, name: str) -> int | None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): nothing in flight on it
            self._loop, self._current, self._queued = loop, None, None
        if self._current is None:
            self._current = loop.create_future()
            self._task = loop.create_task(self._read(cache, name, self._current))
            return await asyncio.shield(self._current)
        if self._queued is None:
            self._queued = loop.create_future()
        return await asyncio.shield(self._queued)

    async def _read(self, cache: Cache, name: str, answer: asyncio.Future[int | None]) -> None:
        while True:
            try:
                version = await cache.version(name)
            except Exception:  # a Cache says None when it cannot read; be safe anyway
                version = None
            answer.set_result(version)
            if self._queued is None:
                self._current = None
                return
            answer, self._current, self._queued = self._queued, self._queued, None


class CachedReadMiddleware:
    """Public cached GETs served from this process's memory, before routing, dependencies or a
    database session: one read of the namespace version in the shared cache, then the stored
    bytes.

    A page is kept here only after its route answered it from (or into) the shared cache under
    a version (`X-Cache` set), keyed by path and raw query string, and is served only while the
    shared version is still that one: a write in any process bumps it, so every process stops
    serving the old pages at once. When the version cannot be read (Redis down) the request
    goes to the route as usual. Requests with credentials (`Authorization`) always go to the
    route (admins see other answers).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        namespace: str,
        prefixes: tuple[str, ...],
        max_items: int = 512,
        max_body: int = 256 * 1024,
    ) -> None:
        self.app = app
        self.name = namespace
        self.prefixes = prefixes
        self.max_items = max_items
        self.max_body = max_body
        self._version = -1
        self._pages: OrderedDict[tuple[str, bytes], _Page] = OrderedDict()
        self._reads = SharedReads()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(self.prefixes)
            or any(name == b"authorization" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        cache: Cache = state.cache
        version = await self._reads.version(cache, self.name)
        if version is None:
            await self.app(scope, receive, send)
            return
        if version != self._version:
            self._pages.clear()
            self._version = version
        key = (scope["path"], scope["query_string"])
        page = self._pages.get(key)
        if page is not None and page.expires > time.monotonic():
            self._pages.move_to_end(key)
            scope["route"] = page.route  # for the metrics' route template
            await _send_json(send, page.body)
            return
        scope.setdefault("state", {})[PINNED_KEY] = {self.name: version}
        await self.app(scope, receive, self._keeper(scope, send, key, version, state))

    def _keeper(
        self, scope: Scope, send: Send, key: tuple[str, bytes], version: int, state: Any
    ) -> Send:
        chunks: list[bytes] | None = None

        async def keep(message: Message) -> None:
            nonlocal chunks
            if message["type"] == "http.response.start":
                cacheable = message["status"] == 200 and any(
                    name == b"x-cache" for name, _ in message.get("headers", ())
                )
                chunks = [] if cacheable else None
            elif message["type"] == "http.response.body" and chunks is not None:
                chunks.append(message.get("body", b""))
                if sum(map(len, chunks)) > self.max_body:
                    chunks = None
                elif not message.get("more_body", False) and version == self._version:
                    ttl = state.settings.CACHE_TTL_SECONDS
                    self._pages[key] = _Page(
                        b"".join(chunks), time.monotonic() + ttl, scope.get("route")
                    )
                    while len(self._pages) > self.max_items:
                        self._pages.popitem(last=False)
            await send(message)

        return keep


async def _send_json(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                (b"x-cache", b"hit"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _app_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(_app_cache)]
"""The app's cache, for routes whose writes must purge cached pages."""
