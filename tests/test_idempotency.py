"""`Idempotency-Key` on checkout: replay, mismatch, in flight, failures released, expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from sellerdesk.kit.idempotency import (
    IdempotencyConflict,
    StoredResponse,
    claim_key,
    purge_expired_keys,
    request_hash,
    store_response,
)
from sellerdesk.models import IdempotencyKey, Order
from sellerdesk.models.base import utcnow
from tests.orders_factories import (
    ADDRESS,
    checkout,
    make_product,
    make_user,
    put_in_cart,
    stock_of,
)


async def _orders(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(Order))) or 0


async def test_same_key_and_body_replays_the_first_response_and_orders_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=5)
    await put_in_cart(client, buyer, product, 2)
    first = await checkout(client, buyer, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    assert first.headers["content-type"] == "application/json"
    stored = await client.get(f"/api/v1/orders/{first.json()['id']}", headers=buyer.headers)
    assert first.json() == stored.json()  # the same order JSON as without a key
    await put_in_cart(client, buyer, product, 1)  # a new cart must not change the replay
    again = await checkout(client, buyer, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await _orders(app) == 1
    assert await stock_of(app, product) == 3


async def test_same_key_with_another_body_is_422_idempotency_conflict(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    await put_in_cart(client, buyer, product)
    assert (await checkout(client, buyer, **{"Idempotency-Key": "k-2"})).status_code == 201
    other = await client.post(
        "/api/v1/orders",
        json={"shipping_address": {**ADDRESS, "city": "Paris", "country": "FR"}},
        headers={**buyer.headers, "Idempotency-Key": "k-2"},
    )
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_conflict"


async def test_body_is_compared_as_parsed_json_not_as_bytes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert request_hash("POST", "/x", b'{"a": 1, "b": [1, 2]}') == request_hash(
        "POST", "/x", b'{"b":[1,2],"a":1}'
    )
    assert request_hash("POST", "/x", b'{"a": 1}') != request_hash("POST", "/y", b'{"a": 1}')
    assert request_hash("POST", "/x", b"{}") != request_hash("POST", "/x", b'{"a": null}')


async def test_keys_belong_to_one_user(app: FastAPI, client: httpx.AsyncClient) -> None:
    product = await make_product(app)
    alice, bob = await make_user(app), await make_user(app)
    for buyer in (alice, bob):
        await put_in_cart(client, buyer, product)
        response = await checkout(client, buyer, **{"Idempotency-Key": "shared"})
        assert response.status_code == 201
        assert response.json()["user_id"] == buyer.id
    assert await _orders(app) == 2


async def test_a_failed_first_attempt_releases_the_key(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=0)
    await put_in_cart(client, buyer, product)
    short = await checkout(client, buyer, **{"Idempotency-Key": "k-3"})
    assert short.status_code == 409
    assert short.json()["error"] == "insufficient_stock"
    await client.post(
        f"/api/v1/admin/inventory/{product}/adjust",
        json={"delta": 3, "reason": "restock"},
        headers=(await make_user(app, admin=True)).headers,
    )
    retry = await checkout(client, buyer, **{"Idempotency-Key": "k-3"})
    assert retry.status_code == 201, retry.text
    assert await stock_of(app, product) == 2


async def test_same_key_while_the_first_is_running_is_409(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    await put_in_cart(client, buyer, product)
    body = {"shipping_address": ADDRESS}
    raw = httpx.Request("POST", "http://test/api/v1/orders", json=body).content
    async with app.state.sessionmaker() as session:  # a claim with no response yet
        session.add(
            IdempotencyKey(
                user_id=buyer.id,
                key="k-4",
                request_hash=request_hash("POST", "/api/v1/orders", raw),
                created_at=utcnow(),
            )
        )
        await session.commit()
    response = await checkout(client, buyer, **{"Idempotency-Key": "k-4"})
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_conflict"
    assert await _orders(app) == 0


async def test_an_abandoned_claim_is_taken_over_after_the_lease(
    make_app: object, client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    await put_in_cart(client, buyer, product)
    async with app.state.sessionmaker() as session:
        session.add(
            IdempotencyKey(
                user_id=buyer.id,
                key="k-5",
                request_hash="0" * 64,
                created_at=utcnow()
                - timedelta(seconds=app.state.settings.IDEMPOTENCY_LEASE_SECONDS + 5),
            )
        )
        await session.commit()
    response = await checkout(client, buyer, **{"Idempotency-Key": "k-5"})
    assert response.status_code == 201, response.text


async def test_keys_older_than_24h_are_ignored_and_purged(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    await put_in_cart(client, buyer, product)
    assert (await checkout(client, buyer, **{"Idempotency-Key": "k-6"})).status_code == 201
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25))
        )
        await session.commit()
    await put_in_cart(client, buyer, product)
    again = await checkout(client, buyer, **{"Idempotency-Key": "k-6"})
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert await _orders(app) == 2
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25))
        )
        await session.commit()
    assert await purge_expired_keys(app.state.sessionmaker) == 1
    assert await purge_expired_keys(app.state.sessionmaker) == 0


async def test_without_the_header_every_request_is_applied(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    for _ in range(2):
        await put_in_cart(client, buyer, product)
        assert (await checkout(client, buyer)).status_code == 201
    assert await _orders(app) == 2


async def test_an_over_long_key_is_422(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    response = await checkout(client, buyer, **{"Idempotency-Key": "x" * 256})
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_ten_concurrent_identical_checkouts_with_one_key_make_one_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=100)
    await put_in_cart(client, buyer, product, 3)
    responses = await asyncio.gather(
        *(checkout(client, buyer, **{"Idempotency-Key": "burst"}) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert len({r.json()["id"] for r in created}) == 1
    assert all(
        r.json()["error"] == "idempotency_conflict" for r in responses if r.status_code == 409
    )
    assert await _orders(app) == 1
    assert await stock_of(app, product) == 97
    # Once the first is done, every retry replays it.
    replay = await checkout(client, buyer, **{"Idempotency-Key": "burst"})
    assert replay.status_code == 201
    assert replay.json()["id"] == created[0].json()["id"]


async def test_a_request_whose_claim_was_taken_over_cannot_store_its_response(
    app: FastAPI,
) -> None:
    buyer = await make_user(app)
    lease = timedelta(seconds=1)
    async with app.state.sessionmaker() as session:
        slow = await claim_key(session, buyer.id, "k-7", "a" * 64, lease=lease)
        later = utcnow() + timedelta(seconds=5)  # the slow request outlived its lease
        retry = await claim_key(session, buyer.id, "k-7", "a" * 64, lease=lease, now=later)
        assert retry.row_id is not None and retry.claimed_at != slow.claimed_at
        with pytest.raises(IdempotencyConflict):
            await store_response(session, slow, StoredResponse(201, b"{}", {}))
        await session.rollback()
        await store_response(session, retry, StoredResponse(201, b"{}", {}))
        await session.commit()
