"""Paid calls that survive slow lookups, retries, cancellations and failed refunds.

- One `Idempotency-Key` is charged at most once while it lives: also when the first attempt
  outlives `IDEMPOTENCY_LEASE_SECONDS` and a retry takes the key over, with
  `CREDITS_REPEAT_WINDOW=0`; replays say `X-Credits-Charged: 0`; keys are per account.
- No charge without its compensation: a call cancelled mid-lookup, or whose refund could not
  be written, gets its credit back through the sweep, exactly once.

The slow upstream is the `local` source behind a gate (`GatedSource`): its next lookups wait
until the test opens the gate. The lease running out is simulated by backdating the claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from sellerdesk.amazon.errors import UpstreamUnavailable
from sellerdesk.credits.service import sweep_unsettled_charges
from sellerdesk.models import CreditCharge
from sellerdesk.models.base import utcnow
from tests.conftest import AppFactory
from tests.credits_factories import (
    GatedSource,
    assert_ledger_consistent,
    balance,
    funded_with_mappings,
    ledger,
)
from tests.factories import Account, expire_claim, register_admin
from tests.private_postgres import PrivatePostgres, app_on

ASIN = "/api/v1/product/asin"
BATCH = "/api/v1/conversion/fnsku/batch"
SWEEP_AFTER = 300


class Setup:
    def __init__(
        self, app: FastAPI, client: httpx.AsyncClient, admin: Account, source: GatedSource
    ) -> None:
        self.app, self.client, self.admin, self.source = app, client, admin, source

    async def user(self, credits: int = 10) -> Account:
        return await funded_with_mappings(self.client, self.admin, credits)

    async def lookup(self, user: Account, n: int = 1, key: str | None = None) -> httpx.Response:
        headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
        return await self.client.post(ASIN, json={"asin": f"B0{n:08d}"}, headers=headers)

    async def started(self, *calls: Awaitable[httpx.Response]) -> list[asyncio.Future[Any]]:
        """Start `calls`; return once each lookup waits at the gate (its charge committed)."""
        tasks = [asyncio.ensure_future(call) for call in calls]
        await asyncio.wait_for(self.source.entered.wait(), timeout=30)
        return tasks

    async def sweep(self, seconds_later: float = SWEEP_AFTER + 1) -> int:
        now = utcnow() + timedelta(seconds=seconds_later)
        return await sweep_unsettled_charges(
            self.app.state.sessionmaker, self.app.state.settings, now=now
        )

    async def charges(self, user: Account) -> list[CreditCharge]:
        async with self.app.state.sessionmaker() as session:
            rows = await session.scalars(
                select(CreditCharge).where(CreditCharge.user_id == user.id).order_by("id")
            )
            return list(rows)

    async def expire_lease(self, user: Account, key: str) -> None:
        """Make the key's claim look older than the lease (the first attempt outlived it)."""
        await expire_claim(self.app, user.id, key)


async def build(make_app: AppFactory, **settings: Any) -> AsyncIterator[Setup]:
    app = await make_app(CREDITS_SWEEP_AFTER_SECONDS=SWEEP_AFTER, **settings)
    source = GatedSource()
    app.state.amazon = source
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Setup(app, client, await register_admin(client, app), source)
    await assert_ledger_consistent(app)


@pytest.fixture
async def paid(make_app: AppFactory) -> AsyncIterator[Setup]:
    """Every call charged (no repeat window): only the key can make a retry free."""
    async for setup in build(make_app, CREDITS_REPEAT_WINDOW=0):
        yield setup


@pytest.fixture
async def windowed(make_app: AppFactory) -> AsyncIterator[Setup]:
    """The default 24 h repeat window."""
    async for setup in build(make_app):
        yield setup


# --------------------------------------------------------------------------- Idempotency-Key


async def test_lookup_outliving_the_lease_retried_with_the_same_key_is_charged_once(
    paid: Setup,
) -> None:
    user = await paid.user()
    paid.source.close_gate()
    [first] = await paid.started(paid.lookup(user, key="slow-1"))
    await paid.expire_lease(user, "slow-1")

    retry = await paid.lookup(user, key="slow-1")  # takes the key over from the first attempt
    assert retry.status_code == 200, retry.text
    assert retry.json()["asin"] == "B000000001"
    assert retry.headers["X-Credits-Charged"] == "0"  # the first attempt's charge stands
    assert retry.headers["X-Credits-Remaining"] == "9"

    paid.source.gate.set()
    late = await first
    assert late.status_code in (409, 503), late.text  # its answer was given by the retry
    assert "X-Credits-Charged" not in late.headers or late.headers["X-Credits-Charged"] == "0"

    replay = await paid.lookup(user, key="slow-1")
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["X-Credits-Charged"] == "0"
    assert replay.json() == retry.json()

    assert await balance(paid.client, user) == 9
    assert [(e.kind, e.amount) for e in await ledger(paid.app, user.id)] == [
        ("grant", 10),
        ("charge", -1),
    ]
    assert [c.outcome for c in await paid.charges(user)] == ["served"]
    assert await paid.sweep() == 0


async def test_a_local_retry_of_a_key_whose_upstream_attempt_died_settles_its_charge(
    paid: Setup,
) -> None:
    """A charge made before an upstream lookup, then answered by the one-transaction path
    (the source answers from the database now, e.g. after a restart with AMAZON_PROVIDER=local):
    the retry carries the charge on and settles it, so the sweep never refunds a served call."""
    user = await paid.user()
    paid.source.close_gate()
    [first] = await paid.started(paid.lookup(user, key="moved-1"))
    first.cancel()  # the worker died mid-lookup: the charge has no outcome
    with pytest.raises(asyncio.CancelledError):
        await first
    await paid.expire_lease(user, "moved-1")
    paid.source.calls_upstream = False
    paid.source.gate.set()

    retry = await paid.lookup(user, key="moved-1")
    assert retry.status_code == 200, retry.text
    assert retry.headers["X-Credits-Charged"] == "0"  # the first attempt's charge stands
    assert retry.headers["X-Credits-Remaining"] == "9"
    assert [c.outcome for c in await paid.charges(user)] == ["served"]
    assert await paid.sweep() == 0
    assert [(e.kind, e.amount) for e in await ledger(paid.app, user.id)] == [
        ("grant", 10),
        ("charge", -1),
    ]
    usage = await paid.client.get("/api/v1/credits/usage", headers=user.headers)
    assert [(i["calls"], i["credits"]) for i in usage.json()["items"]] == [(1, 1)]


async def test_replayed_answer_says_no_credits_were_charged(paid: Setup) -> None:
    user = await paid.user()
    first = await paid.lookup(user, key="once")
    assert (first.status_code, first.headers["X-Credits-Charged"]) == (200, "1")
    for _ in range(3):
        replay = await paid.lookup(user, key="once")
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.headers["X-Credits-Charged"] == "0"
        assert replay.content == first.content
    batch = {"fnskus": ["X000000001", "X000000002"]}
    headers = {**user.headers, "Idempotency-Key": "batch-once"}
    charged = await paid.client.post(BATCH, json=batch, headers=headers)
    assert charged.headers["X-Credits-Charged"] == "2"
    replay = await paid.client.post(BATCH, json=batch, headers=headers)
    assert replay.headers["X-Credits-Charged"] == "0"
    assert await balance(paid.client, user) == 7


async def test_two_users_using_the_same_key_are_each_charged(paid: Setup) -> None:
    alice, bob = await paid.user(), await paid.user()
    responses = await asyncio.gather(paid.lookup(alice, key="1"), paid.lookup(bob, key="1"))
    assert [r.status_code for r in responses] == [200, 200]
    assert [r.headers["X-Credits-Charged"] for r in responses] == ["1", "1"]
    assert (await balance(paid.client, alice), await balance(paid.client, bob)) == (9, 9)
    batch = await paid.client.post(
        BATCH, json={"fnskus": ["X000000003"]}, headers={**bob.headers, "Idempotency-Key": "2"}
    )
    other = await paid.client.post(
        BATCH, json={"fnskus": ["X000000003"]}, headers={**alice.headers, "Idempotency-Key": "2"}
    )
    assert (batch.json()["charged"], other.json()["charged"]) == (1, 1)


async def test_retry_after_a_refunded_failure_is_charged_once_net(paid: Setup) -> None:
    user = await paid.user()
    paid.source.close_gate()
    paid.source.gate.set()

    async def fail() -> None:
        raise UpstreamUnavailable()

    paid.source.then = fail
    failed = await paid.lookup(user, key="flaky")
    assert failed.status_code == 502
    assert failed.headers["X-Credits-Charged"] == "0"
    paid.source.then = None
    served = await paid.lookup(user, key="flaky")  # the failure released the key: runs again
    assert served.status_code == 200
    assert served.headers["X-Credits-Charged"] == "1"
    assert (await paid.lookup(user, key="flaky")).headers["X-Credits-Charged"] == "0"
    assert await balance(paid.client, user) == 9
    assert [(e.kind, e.amount) for e in await ledger(paid.app, user.id)] == [
        ("grant", 10),
        ("charge", -1),
        ("refund", 1),
        ("charge", -1),
    ]
    assert [c.outcome for c in await paid.charges(user)] == ["refunded", "served"]


async def test_retry_taking_over_a_key_whose_charge_was_swept_is_charged_again_once(
    paid: Setup,
) -> None:
    user = await paid.user()
    paid.source.close_gate()
    [first] = await paid.started(paid.lookup(user, key="abandoned"))
    assert await paid.sweep() == 1  # the first attempt hangs past the sweep's horizon
    await paid.expire_lease(user, "abandoned")
    retry = await paid.lookup(user, key="abandoned")
    assert retry.status_code == 200
    assert retry.headers["X-Credits-Charged"] == "1"
    paid.source.gate.set()
    assert (await first).status_code in (409, 503)
    assert await balance(paid.client, user) == 9
    assert [c.outcome for c in await paid.charges(user)] == ["refunded", "served"]


# --------------------------------------------------------------------------- the sweep


async def test_lookup_cancelled_mid_call_gets_its_credit_back_through_the_sweep_once(
    windowed: Setup,
) -> None:
    paid = windowed
    user = await paid.user()
    paid.source.close_gate()
    [call] = await paid.started(paid.lookup(user))
    call.cancel()  # the worker stops mid-call: no response, no refund in the request
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await balance(paid.client, user) == 9
    assert [c.outcome for c in await paid.charges(user)] == [None]

    assert await paid.sweep(seconds_later=SWEEP_AFTER - 5) == 0  # not old enough yet
    assert await paid.sweep() == 1
    assert await paid.sweep() == 0  # once
    assert await balance(paid.client, user) == 10
    entries = await ledger(paid.app, user.id)
    assert [(e.kind, e.amount) for e in entries] == [("grant", 10), ("charge", -1), ("refund", 1)]
    assert entries[2].reference is not None
    assert entries[2].reference.startswith(f"refund of #{entries[1].id}")
    assert [c.outcome for c in await paid.charges(user)] == ["refunded"]
    # The repeat-window marker went with the refund: the next call pays, once.
    assert (await paid.lookup(user)).headers["X-Credits-Charged"] == "1"
    assert (await paid.lookup(user)).headers["X-Credits-Charged"] == "0"


async def test_concurrent_sweeps_refund_each_abandoned_charge_once(paid: Setup) -> None:
    user = await paid.user()
    paid.source.close_gate(lookups=5)
    calls = await paid.started(*(paid.lookup(user, n) for n in range(1, 6)))
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    assert await balance(paid.client, user) == 5

    results = await asyncio.gather(*(paid.sweep() for _ in range(4)))
    assert sum(results) == 5
    assert await paid.sweep() == 0
    assert await balance(paid.client, user) == 10
    assert [c.outcome for c in await paid.charges(user)] == ["refunded"] * 5
    refunds = [e for e in await ledger(paid.app, user.id) if e.kind == "refund"]
    assert len(refunds) == 5


async def test_answer_computed_after_the_sweep_refunded_its_charge_is_not_given(
    paid: Setup,
) -> None:
    user = await paid.user()
    paid.source.close_gate()
    [call] = await paid.started(paid.lookup(user))
    assert await paid.sweep() == 1
    paid.source.gate.set()
    late = await call
    assert late.status_code == 503, late.text
    assert late.json()["error"] == "service_unavailable"
    assert late.headers["X-Credits-Charged"] == "0"
    assert await balance(paid.client, user) == 10
    assert (await paid.lookup(user)).headers["X-Credits-Charged"] == "1"


@pytest.mark.postgres_only
async def test_refund_that_fails_in_the_request_is_given_back_by_the_sweep(
    private_postgres: PrivatePostgres,
) -> None:
    async with app_on(
        private_postgres, "refund_fails", CREDITS_SWEEP_AFTER_SECONDS=SWEEP_AFTER
    ) as app:
        source = GatedSource()
        app.state.amazon = source
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            paid = Setup(app, client, await register_admin(client, app), source)
            user = await paid.user()
            source.close_gate()
            source.gate.set()

            async def database_gone_then_upstream_fails() -> None:
                await asyncio.to_thread(private_postgres.stop)
                raise UpstreamUnavailable()

            source.then = database_gone_then_upstream_fails
            failed = await paid.lookup(user)
            assert failed.status_code in (502, 503), failed.text  # no 500, nothing served
            await asyncio.to_thread(private_postgres.start)

            assert await balance(client, user) == 9  # the refund could not be written
            assert [c.outcome for c in await paid.charges(user)] == [None]
            assert await paid.sweep() == 1
            assert await paid.sweep() == 0
            assert await balance(client, user) == 10
            kinds = [(e.kind, e.amount) for e in await ledger(app, user.id)]
            assert kinds == [("grant", 10), ("charge", -1), ("refund", 1)]
        await assert_ledger_consistent(app)
