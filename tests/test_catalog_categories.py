"""Categories: the public tree, admin writes, slugs, cycles and deletion rules."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.catalog_factories import create_category, create_product
from tests.factories import Account, register, register_admin

API = "/api/v1"


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    return await register_admin(client, app)


def _slugs(nodes: list[dict[str, Any]]) -> list[Any]:
    return [(n["slug"], _slugs(n["children"])) for n in nodes]


async def test_public_tree_nests_active_categories_and_hides_inactive_subtrees(
    client: httpx.AsyncClient, admin: Account
) -> None:
    a = await create_category(client, admin, name="A", slug="a", description="top")
    b = await create_category(client, admin, name="B", slug="b", parent_id=a["id"])
    await create_category(client, admin, name="C", slug="c", parent_id=b["id"])
    hidden = await create_category(client, admin, name="H", slug="h", parent_id=a["id"])
    await create_category(
        client, admin, name="Under hidden", slug="under-h", parent_id=hidden["id"]
    )
    off = await client.patch(
        f"{API}/categories/{hidden['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert off.status_code == 200 and off.json()["is_active"] is False

    tree = await client.get(f"{API}/categories")
    assert tree.status_code == 200
    assert _slugs(tree.json()) == [("a", [("b", [("c", [])])])]
    node = tree.json()[0]
    assert set(node) == {"id", "name", "slug", "description", "parent_id", "children"}
    assert node["description"] == "top" and node["parent_id"] is None
    assert node["children"][0]["parent_id"] == a["id"]


async def test_category_by_slug_has_its_children_and_hidden_or_unknown_is_404(
    client: httpx.AsyncClient, admin: Account
) -> None:
    a = await create_category(client, admin, slug="shoes")
    await create_category(client, admin, slug="boots", parent_id=a["id"])
    found = await client.get(f"{API}/categories/shoes")
    assert found.status_code == 200
    assert found.json()["slug"] == "shoes"
    assert [c["slug"] for c in found.json()["children"]] == ["boots"]
    assert (await client.get(f"{API}/categories/nope")).status_code == 404
    await client.patch(
        f"{API}/categories/{a['id']}", json={"is_active": False}, headers=admin.headers
    )
    for slug in ("shoes", "boots"):
        missing = await client.get(f"{API}/categories/{slug}")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"


async def test_create_category_returns_201_and_validates_slug(
    client: httpx.AsyncClient, admin: Account
) -> None:
    created = await client.post(
        f"{API}/categories", json={"name": "Garden", "slug": "garden-tools"}, headers=admin.headers
    )
    assert created.status_code == 201
    assert created.json()["slug"] == "garden-tools"
    assert created.json()["is_active"] is True
    for slug in ("Garden", "garden tools", "garden_tools", "-garden", "garden-", "a--b", ""):
        bad = await client.post(
            f"{API}/categories", json={"name": "x", "slug": slug}, headers=admin.headers
        )
        assert bad.status_code == 422, slug
        assert bad.json()["error"] == "validation_error"


async def test_duplicate_slug_is_409_conflict_on_create_and_patch(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await create_category(client, admin, slug="toys")
    other = await create_category(client, admin, slug="games")
    dup = await client.post(
        f"{API}/categories", json={"name": "Toys", "slug": "toys"}, headers=admin.headers
    )
    assert dup.status_code == 409 and dup.json()["error"] == "conflict"
    clash = await client.patch(
        f"{API}/categories/{other['id']}", json={"slug": "toys"}, headers=admin.headers
    )
    assert clash.status_code == 409 and clash.json()["error"] == "conflict"


async def test_concurrent_creates_of_one_slug_make_one_category(
    client: httpx.AsyncClient, admin: Account
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/categories", json={"name": "X", "slug": "race"}, headers=admin.headers
            )
            for _ in range(8)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7


async def test_categories_writes_are_admin_only(client: httpx.AsyncClient, admin: Account) -> None:
    user = await register(client)
    body = {"name": "N", "slug": "n"}
    assert (await client.post(f"{API}/categories", json=body)).status_code == 401
    forbidden = await client.post(f"{API}/categories", json=body, headers=user.headers)
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    category = await create_category(client, admin)
    path = f"{API}/categories/{category['id']}"
    assert (await client.patch(path, json={"name": "x"}, headers=user.headers)).status_code == 403
    assert (await client.delete(path, headers=user.headers)).status_code == 403


async def test_parent_may_not_become_its_own_descendant(
    client: httpx.AsyncClient, admin: Account
) -> None:
    a = await create_category(client, admin, slug="a")
    b = await create_category(client, admin, slug="b", parent_id=a["id"])
    c = await create_category(client, admin, slug="c", parent_id=b["id"])
    for parent in (c, b, a):
        cycle = await client.patch(
            f"{API}/categories/{a['id']}", json={"parent_id": parent["id"]}, headers=admin.headers
        )
        assert cycle.status_code == 422, parent
        assert cycle.json()["error"] == "validation_error"
    moved = await client.patch(
        f"{API}/categories/{c['id']}", json={"parent_id": a["id"]}, headers=admin.headers
    )
    assert moved.status_code == 200 and moved.json()["parent_id"] == a["id"]
    to_root = await client.patch(
        f"{API}/categories/{c['id']}", json={"parent_id": None}, headers=admin.headers
    )
    assert to_root.status_code == 200 and to_root.json()["parent_id"] is None


@pytest.mark.postgres_only
async def test_concurrent_opposite_moves_cannot_close_a_cycle(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for _ in range(5):
        a = await create_category(client, admin)
        b = await create_category(client, admin)
        results = await asyncio.gather(
            client.patch(
                f"{API}/categories/{a['id']}", json={"parent_id": b["id"]}, headers=admin.headers
            ),
            client.patch(
                f"{API}/categories/{b['id']}", json={"parent_id": a["id"]}, headers=admin.headers
            ),
        )
        assert sorted(r.status_code for r in results) == [200, 422]


async def test_unknown_parent_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    created = await client.post(
        f"{API}/categories",
        json={"name": "x", "slug": "x", "parent_id": 999999},
        headers=admin.headers,
    )
    assert created.status_code == 422
    category = await create_category(client, admin)
    patched = await client.patch(
        f"{API}/categories/{category['id']}", json={"parent_id": 999999}, headers=admin.headers
    )
    assert patched.status_code == 422


async def test_patch_rejects_null_name_and_unknown_fields(
    client: httpx.AsyncClient, admin: Account
) -> None:
    category = await create_category(client, admin)
    path = f"{API}/categories/{category['id']}"
    assert (await client.patch(path, json={"name": None}, headers=admin.headers)).status_code == 422
    assert (
        await client.patch(path, json={"colour": "red"}, headers=admin.headers)
    ).status_code == 422
    renamed = await client.patch(
        path, json={"name": "Renamed", "description": "d"}, headers=admin.headers
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Renamed" and renamed.json()["description"] == "d"
    assert (
        await client.patch(f"{API}/categories/999999", json={}, headers=admin.headers)
    ).status_code == 404


async def test_delete_category_rules(client: httpx.AsyncClient, admin: Account) -> None:
    parent = await create_category(client, admin)
    child = await create_category(client, admin, parent_id=parent["id"])
    product = await create_product(client, admin, category_id=child["id"])

    has_children = await client.delete(f"{API}/categories/{parent['id']}", headers=admin.headers)
    assert has_children.status_code == 409 and has_children.json()["error"] == "conflict"
    has_products = await client.delete(f"{API}/categories/{child['id']}", headers=admin.headers)
    assert has_products.status_code == 409 and has_products.json()["error"] == "conflict"

    # A deactivated product still belongs to the category.
    await client.patch(
        f"{API}/products/{product['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert (
        await client.delete(f"{API}/categories/{child['id']}", headers=admin.headers)
    ).status_code == 409

    await client.delete(f"{API}/products/{product['id']}", headers=admin.headers)
    assert (
        await client.delete(f"{API}/categories/{child['id']}", headers=admin.headers)
    ).status_code == 204
    assert (
        await client.delete(f"{API}/categories/{parent['id']}", headers=admin.headers)
    ).status_code == 204
    assert (
        await client.delete(f"{API}/categories/{parent['id']}", headers=admin.headers)
    ).status_code == 404
    assert (await client.get(f"{API}/categories")).json() == []
