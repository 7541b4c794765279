"""API keys: shown once, stored hashed, listed without secrets, revoked at once; the Payer."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.models import ApiKey, User
from tests.auth_helpers import assert_error
from tests.conftest import AppFactory
from tests.credits_factories import (
    assert_ledger_consistent,
    create_key,
    grant,
    mount_paid_test_routes,
)
from tests.factories import register, register_admin

LOOKUP = "/api/v1/test-paid/lookup"


async def test_create_shows_the_key_once_and_stores_only_a_hash(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    created = await create_key(client, user, "laptop")
    assert set(created) >= {"id", "name", "prefix", "key", "created_at"}
    assert created["name"] == "laptop"
    assert created["key"].startswith(created["prefix"])
    assert len(created["key"]) > len(created["prefix"]) + 32
    listed = await client.get("/api/v1/api-keys", headers=user.headers)
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["prefix"] == created["prefix"] and "key" not in item
    assert created["key"] not in listed.text
    async with app.state.sessionmaker() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.id == created["id"]))
    assert row is not None
    assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
    assert row.key_hash not in listed.text and "hash" not in listed.text


async def test_keys_need_a_user_and_a_name(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/api-keys", json={"name": "x"})).status_code == 401
    user = await register(client)
    bad = await client.post("/api/v1/api-keys", json={"name": ""}, headers=user.headers)
    assert bad.status_code == 422
    nul = await client.post("/api/v1/api-keys", json={"name": "a\x00"}, headers=user.headers)
    assert nul.status_code == 422


async def test_revoking_another_users_key_is_404(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    other = await register(client)
    key = await create_key(client, owner)
    gone = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=other.headers)
    assert gone.status_code == 404
    assert (await client.delete("/api/v1/api-keys/0", headers=owner.headers)).status_code in (
        404,
        422,
    )
    revoked = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=owner.headers)
    assert revoked.status_code == 204
    again = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=owner.headers)
    assert again.status_code == 404
    assert (await client.get("/api/v1/api-keys", headers=owner.headers)).json()["total"] == 0


async def test_paid_call_with_api_key_and_revoked_key_is_401_at_once(
    make_app: AppFactory,
) -> None:
    app = mount_paid_test_routes(await make_app())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        admin = await register_admin(client, app)
        user = await register(client)
        await grant(client, admin, user.id, 10)
        key = await create_key(client, user)
        headers = {"X-API-Key": key["key"]}
        ok = await client.post(LOOKUP, json={"code": "B000000001"}, headers=headers)
        assert ok.status_code == 200, ok.text
        assert ok.headers["X-Credits-Charged"] == "1"
        assert ok.headers["X-Credits-Remaining"] == "9"
        listed = (await client.get("/api/v1/api-keys", headers=user.headers)).json()
        assert listed["items"][0]["last_used_at"] is not None
        balance = await client.get("/api/v1/credits", headers=headers)
        assert balance.json()["balance"] == 9
        assert (
            await client.delete(f"/api/v1/api-keys/{key['id']}", headers=user.headers)
        ).status_code == 204
        refused = await client.post(LOOKUP, json={"code": "B000000002"}, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
        await assert_ledger_consistent(app)


async def test_payer_credentials_errors(make_app: AppFactory) -> None:
    app = mount_paid_test_routes(await make_app())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        user = await register(client)
        key = await create_key(client, user)
        none = await client.post(LOOKUP, json={"code": "B000000001"})
        assert (none.status_code, none.json()["error"]) == (401, "not_authenticated")
        for bad in ("nonsense", key["key"][:-1] + ("A" if key["key"][-1] != "A" else "B"), ""):
            response = await client.post(
                LOOKUP, json={"code": "B000000001"}, headers={"X-API-Key": bad}
            )
            expected = "not_authenticated" if bad == "" else "invalid_token"
            assert (response.status_code, response.json()["error"]) == (401, expected), bad
        forged = await client.post(
            LOOKUP, json={"code": "B000000001"}, headers={"Authorization": "Bearer x.y.z"}
        )
        assert (forged.status_code, forged.json()["error"]) == (401, "invalid_token")


async def test_deactivated_users_keys_stop_working_at_once(make_app: AppFactory) -> None:
    app = mount_paid_test_routes(await make_app())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        admin = await register_admin(client, app)
        user = await register(client)
        await grant(client, admin, user.id, 5)
        key = await create_key(client, user)
        headers = {"X-API-Key": key["key"]}
        assert (
            await client.post(LOOKUP, json={"code": "B000000001"}, headers=headers)
        ).status_code == 200
        off = await client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin.headers
        )
        assert off.status_code == 200
        refused = await client.post(LOOKUP, json={"code": "B000000002"}, headers=headers)
        assert refused.status_code in (401, 403)
        await assert_ledger_consistent(app)


# --------------------------------------------------------------------------- limits


async def test_a_user_holds_at_most_api_keys_per_user_live_keys(make_app: AppFactory) -> None:
    app = await make_app(API_KEYS_PER_USER=3)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        user = await register(client)
        keys = [await create_key(client, user, f"k{n}") for n in range(3)]
        refused = await client.post("/api/v1/api-keys", json={"name": "k3"}, headers=user.headers)
        body = assert_error(refused, 409, "conflict")
        assert "3" in body["message"]
        # A revoked key frees its place; other users are not affected.
        revoked = await client.delete(f"/api/v1/api-keys/{keys[0]['id']}", headers=user.headers)
        assert revoked.status_code == 204
        await create_key(client, user, "k4")
        refused = await client.post("/api/v1/api-keys", json={"name": "k5"}, headers=user.headers)
        assert_error(refused, 409, "conflict")
        await create_key(client, await register(client), "theirs")


async def test_thirty_concurrent_creates_give_exactly_twenty_keys(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/api-keys", json={"name": f"k{n}"}, headers=user.headers)
            for n in range(30)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] * 20 + [409] * 10
    listed = await client.get("/api/v1/api-keys?page_size=100", headers=user.headers)
    assert listed.json()["total"] == 20
    async with app.state.sessionmaker() as session:
        live = await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
        )
        counted = await session.scalar(select(User.api_key_count).where(User.id == user.id))
    assert live == counted == 20


async def test_concurrent_revocations_of_one_key_free_one_place(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    key = await create_key(client, user)
    await create_key(client, user)
    responses = await asyncio.gather(
        *(client.delete(f"/api/v1/api-keys/{key['id']}", headers=user.headers) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [204] + [404] * 4
    async with app.state.sessionmaker() as session:
        counted = await session.scalar(select(User.api_key_count).where(User.id == user.id))
    assert counted == 1


async def test_the_paid_call_limit_counts_per_user_across_all_keys(make_app: AppFactory) -> None:
    app = mount_paid_test_routes(await make_app(RATE_LIMIT_DEFAULT="3/minute"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        admin = await register_admin(client, app)
        user = await register(client)
        await grant(client, admin, user.id, 100)
        keys = [await create_key(client, user, f"k{n}") for n in range(5)]
        codes = iter(f"B00000{n:04d}" for n in range(100))

        async def call(headers: dict[str, str]) -> httpx.Response:
            return await client.post(LOOKUP, json={"code": next(codes)}, headers=headers)

        statuses = [(await call({"X-API-Key": k["key"]})).status_code for k in keys]
        assert statuses == [200, 200, 200, 429, 429]
        refused = await call(user.headers)  # the Bearer token shares the same limit
        assert_error(refused, 429, "rate_limited")
        assert refused.headers["X-RateLimit-Limit"] == "3"
        # Another user has their own allowance.
        other = await register(client)
        await grant(client, admin, other.id, 1)
        assert (await call(other.headers)).status_code == 200
        await assert_ledger_consistent(app)
