"""The service routes and the error shape, end to end."""

from __future__ import annotations

import httpx

from tests.factories import register


async def test_root_and_health(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 200
    assert root.json()["version"]
    assert (await client.get("/health")).json() == {"status": "healthy"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["database"] == "ok"


async def test_register_login_me(client: httpx.AsyncClient) -> None:
    account = await register(client)
    me = await client.get("/api/v1/users/me", headers=account.headers)
    assert me.status_code == 200
    assert me.json()["email"] == account.email
    assert me.headers["cache-control"] == "no-store"
    assert "hashed_password" not in me.text
