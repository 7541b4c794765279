"""`CachedReadMiddleware`: public cached pages served from process memory only while the shared
namespace version is the one they were built under."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from sellerdesk.kit.cache import CachedReadMiddleware, MemoryCache, SharedReads, request_cache


class UnreadableVersion(MemoryCache):
    """A shared cache whose version cannot be read (Redis down)."""

    async def version(self, name: str) -> int | None:
        return None


def build(cache: MemoryCache) -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    app.state.cache = cache
    app.state.settings = SimpleNamespace(CACHE_TTL_SECONDS=60)
    built: list[str] = []

    @app.get("/items")
    async def items(request: Request, q: str = "") -> Response:
        namespace = await request_cache(request).namespace("catalog")
        built.append(namespace)
        body = f'{{"q":"{q}","namespace":"{namespace}","n":{len(built)}}}'.encode()
        return Response(body, media_type="application/json", headers={"X-Cache": "miss"})

    @app.get("/items/private")
    async def private() -> Response:  # no X-Cache: never kept
        built.append("private")
        return Response(b"{}", media_type="application/json")

    app.add_middleware(CachedReadMiddleware, namespace="catalog", prefixes=("/items",))
    return app, built


async def get(app: FastAPI, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


async def test_a_kept_page_is_served_without_the_route_until_the_version_changes() -> None:
    cache = MemoryCache("test")
    app, built = build(cache)
    first = await get(app, "/items?q=a")
    again = await get(app, "/items?q=a")
    assert len(built) == 1
    assert again.content == first.content
    assert again.headers["X-Cache"] == "hit"
    assert again.headers["Content-Type"] == "application/json"
    assert (await get(app, "/items?q=b")).json()["q"] == "b"  # another query string
    assert len(built) == 2

    await cache.invalidate("catalog")  # a write, in any process
    fresh = await get(app, "/items?q=a")
    assert len(built) == 3
    # The route built its page under the version the middleware read, and that page is kept.
    assert fresh.json()["namespace"] == cache.namespace_at("catalog", 1)
    assert (await get(app, "/items?q=a")).content == fresh.content
    assert len(built) == 3


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/items?q=a", {"Authorization": "Bearer token"}),  # admins see other answers
        ("/items/private", {}),  # the route did not mark its answer as a cached page
    ],
)
async def test_requests_and_answers_that_are_not_public_cached_pages_always_reach_the_route(
    path: str, headers: dict[str, str]
) -> None:
    app, built = build(MemoryCache("test"))
    for _ in range(3):
        assert (await get(app, path, **headers)).status_code == 200
    assert len(built) == 3


async def test_an_unreadable_version_sends_every_request_to_the_route() -> None:
    app, built = build(UnreadableVersion("test"))
    for _ in range(3):
        assert (await get(app, "/items?q=a")).status_code == 200
    assert len(built) == 3


class SlowVersions(MemoryCache):
    """Each read of the version is a round trip that ends when the test says so; the n-th read
    answers n."""

    def __init__(self) -> None:
        super().__init__("test")
        self.reads = 0
        self.release = asyncio.Event()

    async def version(self, name: str) -> int | None:
        self.reads += 1
        number = self.reads
        await self.release.wait()
        self.release.clear()
        return number


async def test_concurrent_requests_share_reads_but_never_one_sent_before_they_arrived() -> None:
    cache, reads = SlowVersions(), SharedReads()
    first = asyncio.create_task(reads.version(cache, "catalog"))
    await asyncio.sleep(0)
    # These arrive while read 1 is on the wire: they wait for read 2, which they all share.
    later = [asyncio.create_task(reads.version(cache, "catalog")) for _ in range(5)]
    await asyncio.sleep(0)
    cache.release.set()
    assert await first == 1
    await asyncio.sleep(0)
    cache.release.set()
    assert await asyncio.gather(*later) == [2] * 5
    assert cache.reads == 2
    # Nothing on the wire: the next request starts a read of its own.
    alone = asyncio.create_task(reads.version(cache, "catalog"))
    await asyncio.sleep(0)
    cache.release.set()
    assert await alone == 3
