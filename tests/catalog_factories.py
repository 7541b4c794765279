"""Plain async factories for the catalog, acting through the admin API like a store owner."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from tests.factories import Account

_seq = itertools.count(1)


async def create_category(
    client: httpx.AsyncClient, admin: Account, **fields: Any
) -> dict[str, Any]:
    n = next(_seq)
    body = {"name": f"Category {n}", "slug": f"category-{n}", **fields}
    response = await client.post("/api/v1/categories", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def create_product(
    client: httpx.AsyncClient, admin: Account, **fields: Any
) -> dict[str, Any]:
    n = next(_seq)
    body = {"name": f"Product {n}", "sku": f"SKU-{n:05d}", "price": "10.00", **fields}
    response = await client.post("/api/v1/products", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def csv_upload(text: str, name: str = "products.csv") -> dict[str, Any]:
    """The `files=` argument of a multipart upload in the field `file`."""
    return {"file": (name, text.encode("utf-8"), "text/csv")}
