"""`Idempotency-Key` edges the mutation run (docs/mutation.md) found unheld: the lease and 24 h
boundaries, a replay after the lease, keys of two users on a retry, and the purge's cut-off.

The boundaries are checked with the `now` the service takes, so the exact instant is tested,
not a second either side of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from sellerdesk.kit.idempotency import (
    KEY_TTL,
    IdempotencyConflict,
    StoredResponse,
    claim_key,
    purge_expired_keys,
    store_response,
)
from sellerdesk.models import IdempotencyKey, Order
from sellerdesk.models.base import utcnow
from tests.orders_factories import checkout, make_product, make_user, put_in_cart

LEASE = timedelta(seconds=120)
FINGERPRINT = "f" * 64


async def _complete(app: FastAPI, user_id: int, key: str) -> datetime | None:
    """Claim `key` and store a response on it, as a finished request leaves it."""
    async with app.state.sessionmaker() as session:
        claim = await claim_key(session, user_id, key, FINGERPRINT, lease=LEASE)
        await store_response(session, claim, StoredResponse(201, b'{"done":1}', {}))
        await session.commit()
    return claim.claimed_at


async def test_an_unfinished_claim_exactly_one_lease_old_is_taken_over(app: FastAPI) -> None:
    buyer = await make_user(app)
    async with app.state.sessionmaker() as session:
        first = await claim_key(session, buyer.id, "lease", FINGERPRINT, lease=LEASE)
        assert first.claimed_at is not None
        retry = await claim_key(
            session, buyer.id, "lease", FINGERPRINT, lease=LEASE, now=first.claimed_at + LEASE
        )
    assert retry.replay is None and retry.row_id is not None
    assert retry.claimed_at == first.claimed_at + LEASE  # a new claim, not the first one


async def test_a_finished_key_exactly_24h_old_is_taken_over_not_replayed(app: FastAPI) -> None:
    buyer = await make_user(app)
    claimed_at = await _complete(app, buyer.id, "day")
    assert claimed_at is not None
    async with app.state.sessionmaker() as session:
        again = await claim_key(
            session, buyer.id, "day", FINGERPRINT, lease=LEASE, now=claimed_at + KEY_TTL
        )
    assert again.replay is None and again.row_id is not None


async def test_a_finished_key_is_replayed_long_after_the_lease(app: FastAPI) -> None:
    buyer = await make_user(app)
    claimed_at = await _complete(app, buyer.id, "later")
    assert claimed_at is not None
    async with app.state.sessionmaker() as session:
        again = await claim_key(
            session,
            buyer.id,
            "later",
            FINGERPRINT,
            lease=LEASE,
            now=claimed_at + KEY_TTL - timedelta(seconds=1),
        )
    assert again.row_id is None
    assert again.replay == StoredResponse(201, b'{"done":1}', {})


async def test_two_users_retrying_one_key_each_get_their_own_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    product = await make_product(app, stock=10)
    alice, bob = await make_user(app), await make_user(app)
    first: dict[int, httpx.Response] = {}
    for buyer in (alice, bob):
        await put_in_cart(client, buyer, product)
        first[buyer.id] = await checkout(client, buyer, **{"Idempotency-Key": "shared"})
        assert first[buyer.id].status_code == 201
    for buyer in (alice, bob):
        retry = await checkout(client, buyer, **{"Idempotency-Key": "shared"})
        assert retry.status_code == 201, retry.text
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.content == first[buyer.id].content
        assert retry.json()["user_id"] == buyer.id
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 2


async def test_purge_removes_only_keys_strictly_older_than_24h(app: FastAPI) -> None:
    buyer = await make_user(app)
    now = utcnow()
    ages = {"old": KEY_TTL + timedelta(seconds=1), "edge": KEY_TTL, "young": KEY_TTL / 2}
    async with app.state.sessionmaker() as session:
        for key, age in ages.items():
            await claim_key(session, buyer.id, key, FINGERPRINT, lease=LEASE)
            await session.execute(
                update(IdempotencyKey).where(IdempotencyKey.key == key).values(created_at=now - age)
            )
        await session.commit()
    assert await purge_expired_keys(app.state.sessionmaker, now=now) == 1
    async with app.state.sessionmaker() as session:
        left = set(await session.scalars(select(IdempotencyKey.key)))
    assert left == {"edge", "young"}


async def test_a_request_whose_claim_was_taken_over_is_told_to_retry(app: FastAPI) -> None:
    buyer = await make_user(app)
    async with app.state.sessionmaker() as session:
        slow = await claim_key(session, buyer.id, "over", FINGERPRINT, lease=LEASE)
        assert slow.claimed_at is not None
        await claim_key(
            session, buyer.id, "over", FINGERPRINT, lease=LEASE, now=slow.claimed_at + LEASE
        )
        with pytest.raises(IdempotencyConflict) as refused:
            await store_response(session, slow, StoredResponse(201, b"{}", {}))
    assert refused.value.status_code == 409
    assert refused.value.message == "This request's Idempotency-Key was taken over; retry it."


async def test_taking_over_a_key_leaves_other_users_slow_requests_alone(app: FastAPI) -> None:
    alice, bob = await make_user(app), await make_user(app)
    async with app.state.sessionmaker() as session:
        slow_bob = await claim_key(session, bob.id, "k", FINGERPRINT, lease=LEASE)
        old_alice = await claim_key(session, alice.id, "k", FINGERPRINT, lease=LEASE)
        assert old_alice.claimed_at is not None
        # Both claims outlived the lease; only Alice retries, and takes her own key over.
        retry = await claim_key(
            session, alice.id, "k", FINGERPRINT, lease=LEASE, now=old_alice.claimed_at + LEASE
        )
        assert retry.row_id is not None and retry.replay is None
        # Bob's request is still running: its answer is stored as usual.
        await store_response(session, slow_bob, StoredResponse(201, b"{}", {}))
        await session.commit()


async def test_a_retry_replays_its_own_keys_answer_among_the_accounts_other_keys(
    app: FastAPI,
) -> None:
    """Found by the full mutation run: every key test used one key per account, so the claim's
    lookup without its `key` filter (the account's only row) went unseen."""
    buyer = await make_user(app)
    async with app.state.sessionmaker() as session:
        for key, body in (("first", b'{"n":1}'), ("second", b'{"n":2}')):
            claim = await claim_key(session, buyer.id, key, FINGERPRINT, lease=LEASE)
            await store_response(session, claim, StoredResponse(201, body, {}))
            await session.commit()
        again = await claim_key(session, buyer.id, "first", FINGERPRINT, lease=LEASE)
    assert again.replay == StoredResponse(201, b'{"n":1}', {})
