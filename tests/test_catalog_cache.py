"""Cached public catalog responses: served as stored bytes, never stale after a write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, update

from sellerdesk.catalog.service import invalidate_catalog
from sellerdesk.db import commit
from sellerdesk.inventory.movements import record_movement
from sellerdesk.kit.cache import RedisCache
from sellerdesk.models import Product
from tests.catalog_factories import create_category, create_product, csv_upload
from tests.factories import Account, register_admin

API = "/api/v1"
LIST = f"{API}/products?sort=name"


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    return await register_admin(client, app)


async def _warm(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET twice; the second answer must come from the cache."""
    first = await client.get(path)
    second = await client.get(path)
    assert second.headers.get("x-cache") == "hit", path
    assert second.content == first.content
    return second


async def test_a_hit_is_served_without_the_database(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    category = await create_category(client, admin, slug="c")
    product = await create_product(client, admin, category_id=category["id"])
    paths = [LIST, f"{API}/products/{product['id']}", f"{API}/categories", f"{API}/categories/c"]
    bodies = {path: (await _warm(client, path)).content for path in paths}

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for path in paths:
            response = await client.get(path)
            assert response.status_code == 200
            assert response.content == bodies[path]
            assert response.headers["content-type"] == "application/json"
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []


async def test_admins_bypass_the_cache(client: httpx.AsyncClient, admin: Account) -> None:
    product = await create_product(client, admin)
    await _warm(client, f"{API}/products/{product['id']}")
    response = await client.get(f"{API}/products/{product['id']}", headers=admin.headers)
    assert response.status_code == 200 and "x-cache" not in response.headers
    listing = await client.get(LIST, headers=admin.headers)
    assert "x-cache" not in listing.headers


Write = Callable[[httpx.AsyncClient, FastAPI, Account, dict[str, Any]], Awaitable[None]]


async def _create(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, p: dict[str, Any]
) -> None:
    await create_product(client, admin, name="Zz new", category_id=p["category_id"])


async def _patch_price(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, p: dict[str, Any]
) -> None:
    r = await client.patch(
        f"{API}/products/{p['id']}", json={"price": "77.70"}, headers=admin.headers
    )
    assert r.status_code == 200


async def _deactivate(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, p: dict[str, Any]
) -> None:
    r = await client.patch(
        f"{API}/products/{p['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert r.status_code == 200


async def _delete(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, p: dict[str, Any]
) -> None:
    assert (
        await client.delete(f"{API}/products/{p['id']}", headers=admin.headers)
    ).status_code == 204


async def _category_change(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, p: dict[str, Any]
) -> None:
    r = await client.patch(
        f"{API}/categories/{p['category_id']}",
        json={"name": "Renamed", "is_active": False},
        headers=admin.headers,
    )
    assert r.status_code == 200


async def _import(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, p: dict[str, Any]
) -> None:
    text = f"sku,name,price,stock_quantity\n{p['sku']},Imported,55.50,9\n"
    r = await client.post(f"{API}/products/import", files=csv_upload(text), headers=admin.headers)
    assert r.json() == {"created": 0, "updated": 1, "errors": []}


async def _stock_change(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, p: dict[str, Any]
) -> None:
    # What checkout does: one conditional UPDATE, a movement, and the catalog invalidation.
    async with app.state.sessionmaker() as session:
        stock = await session.scalar(
            update(Product)
            .where(Product.id == p["id"], Product.stock_quantity >= 3)
            .values(stock_quantity=Product.stock_quantity - 3)
            .returning(Product.stock_quantity)
        )
        assert stock == 0
        await record_movement(
            session,
            product_id=p["id"],
            delta=-3,
            stock_after=0,
            low_stock_threshold=5,
            reason="order",
        )
        await invalidate_catalog(session, app.state.cache)
        await commit(session)


def _expect_created(before: dict[str, Any], after: dict[str, Any], detail: Any) -> None:
    assert after["total"] == before["total"] + 1


def _expect_price(before: dict[str, Any], after: dict[str, Any], detail: Any) -> None:
    assert after["items"][0]["price"] == "77.70" and detail.json()["price"] == "77.70"


def _expect_gone(before: dict[str, Any], after: dict[str, Any], detail: Any) -> None:
    assert after["total"] == 0 and after["items"] == [] and detail.status_code == 404


def _expect_category(before: dict[str, Any], after: dict[str, Any], detail: Any) -> None:
    assert after["total"] == 0  # the category filter no longer finds a hidden category


def _expect_import(before: dict[str, Any], after: dict[str, Any], detail: Any) -> None:
    item = after["items"][0]
    assert item["name"] == "Imported" and item["price"] == "55.50" and item["stock_quantity"] == 9
    assert detail.json()["name"] == "Imported"


def _expect_stock(before: dict[str, Any], after: dict[str, Any], detail: Any) -> None:
    assert after["items"][0]["stock_quantity"] == 0 and after["items"][0]["in_stock"] is False
    assert detail.json()["in_stock"] is False


@pytest.mark.parametrize(
    ("write", "check"),
    [
        (_create, _expect_created),
        (_patch_price, _expect_price),
        (_deactivate, _expect_gone),
        (_delete, _expect_gone),
        (_category_change, _expect_category),
        (_import, _expect_import),
        (_stock_change, _expect_stock),
    ],
    ids=["create", "patch-price", "deactivate", "delete", "category", "import", "stock"],
)
async def test_no_cached_response_survives_a_write(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, write: Write, check: Any
) -> None:
    category = await create_category(client, admin, slug="cached")
    product = await create_product(
        client, admin, name="Aa cached", price="10.00", stock_quantity=3, category_id=category["id"]
    )
    listing = f"{API}/products?category=cached&sort=name"
    detail_path = f"{API}/products/{product['id']}"
    before = (await _warm(client, listing)).json()
    await _warm(client, detail_path)
    tree = (await _warm(client, f"{API}/categories")).json()

    await write(client, app, admin, product)

    after = await client.get(listing)
    assert after.headers["x-cache"] == "miss"
    detail = await client.get(detail_path)
    check(before, after.json(), detail)
    new_tree = await client.get(f"{API}/categories")
    assert new_tree.headers["x-cache"] == "miss"
    if write is _category_change:
        assert new_tree.json() == [] and tree != []


async def test_a_refused_import_leaves_the_cache_alone(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await create_product(client, admin)
    await _warm(client, LIST)
    text = "sku,name,price,stock_quantity\nX,Bad,1.001,1\n"
    await client.post(f"{API}/products/import", files=csv_upload(text), headers=admin.headers)
    assert (await client.get(LIST)).headers["x-cache"] == "hit"


async def test_memory_cache_without_redis(make_app: Any) -> None:
    app = await make_app(REDIS_URL=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        admin = await register_admin(client, app)
        product = await create_product(client, admin, price="1.00")
        await _warm(client, f"{API}/products/{product['id']}")
        await client.patch(
            f"{API}/products/{product['id']}", json={"price": "2.00"}, headers=admin.headers
        )
        fresh = await client.get(f"{API}/products/{product['id']}")
        assert fresh.json()["price"] == "2.00"


class _Partitioned:
    """A Redis client stand-in whose `incr` fails while `reachable` is False."""

    def __init__(self) -> None:
        self.reachable = True
        self.versions: dict[str, int] = {}

    async def incr(self, key: str) -> int:
        if not self.reachable:
            raise ConnectionError("unreachable")
        self.versions[key] = self.versions.get(key, 0) + 1
        return self.versions[key]

    async def get(self, key: str) -> bytes | None:
        if not self.reachable:
            raise ConnectionError("unreachable")
        version = self.versions.get(key)
        return None if version is None else str(version).encode()


async def test_an_invalidation_redis_missed_is_made_before_the_next_read() -> None:
    redis = _Partitioned()
    cache = RedisCache(redis, "p")  # type: ignore[arg-type]
    before = await cache.namespace("catalog")
    redis.reachable = False
    with pytest.raises(ConnectionError):
        await cache.invalidate("catalog")
    redis.reachable = True  # back, with its data: the old pages are still there
    assert await cache.namespace("catalog") != before
    assert await cache.namespace("catalog") == await cache.namespace("catalog")
