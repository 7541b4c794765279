"""The demo catalog: a three-level tree, 1,000+ products, idempotent."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.catalog.identifiers import normalize_asin
from sellerdesk.catalog.seed import seed_catalog
from sellerdesk.db import commit
from sellerdesk.models import Category, Product, StockMovement


async def _counts(app: FastAPI) -> tuple[int, int, int]:
    async with app.state.sessionmaker() as session:
        counts = [
            int(await session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Category, Product, StockMovement)
        ]
    return counts[0], counts[1], counts[2]


async def test_seed_builds_a_three_level_tree_and_1000_products_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    for _ in range(2):
        async with app.state.sessionmaker() as session:
            await seed_catalog(session, app.state.settings)
            await commit(session)
        categories, products, movements = await _counts(app)
        assert categories == 65 and products >= 1000 and 0 < movements <= products

    tree = (await client.get("/api/v1/categories")).json()
    assert len(tree) == 5
    assert all(len(top["children"]) == 3 for top in tree)
    assert all(len(mid["children"]) == 3 for top in tree for mid in top["children"])
    assert all(not leaf["children"] for t in tree for m in t["children"] for leaf in m["children"])

    department = tree[0]["slug"]
    listed = (await client.get(f"/api/v1/products?category={department}&page_size=1")).json()
    assert products // 6 < listed["total"] < products // 4

    async with app.state.sessionmaker() as session:
        asins = (await session.scalars(select(Product.asin).where(Product.asin.is_not(None)))).all()
        low = await session.scalar(
            select(func.count())
            .select_from(Product)
            .where(Product.stock_quantity <= Product.low_stock_threshold)
        )
    assert len(asins) >= 100 and all(normalize_asin(a) == a for a in asins)
    assert low and low > 0
    searched = (await client.get("/api/v1/products?q=mug&page_size=5")).json()
    assert searched["total"] > 0
