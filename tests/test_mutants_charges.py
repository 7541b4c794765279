"""Paid calls' charges under a client `Idempotency-Key`, and the sweep of abandoned charges, each
written to kill a mutant of the full mutation run that the suite let through (issue 18,
docs/mutation.md).

A charge made under a key and not settled yet (its lookup still runs, or died) is carried on by
a retry of the same request under the same key of the same account, and by nothing else. The
sweep refunds charges left unsettled for `CREDITS_SWEEP_AFTER_SECONDS`, counted from their
creation, and says why in the refund's ledger entry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from sellerdesk.credits import service as credits_service
from sellerdesk.credits.repository import PaidLookupRepository
from sellerdesk.models import CreditCharge, CreditPaidLookup
from sellerdesk.models.base import utcnow
from tests.credits_factories import balance, grant, ledger
from tests.factories import Account, register, register_admin

ENDPOINT = "asin_lookup"


async def funded(client: httpx.AsyncClient, admin: Account, credits: int = 10) -> Account:
    user = await register(client)
    assert (await grant(client, admin, user.id, credits)).status_code == 200
    return user


async def charge(
    app: FastAPI, user: Account, code: str, key: str | None, *, now: datetime | None = None
) -> credits_service.Charge:
    """One unsettled charge of `code` (the lookup is still running), committed."""
    async with app.state.sessionmaker() as session:
        made = await credits_service.charge(
            session,
            user_id=user.id,
            endpoint=ENDPOINT,
            codes=[code],
            unit_cost=1,
            repeat_window=0,
            reference=code,
            idempotency_key=key,
        )
        if now is not None and made.charge_id is not None:
            row = await session.get(CreditCharge, made.charge_id)
            assert row is not None
            row.created_at = now
        await session.commit()
        return made


async def test_a_retry_under_the_key_carries_on_its_own_charge_and_nothing_else_does(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    alice, bob = await funded(client, admin), await funded(client, admin)

    first = await charge(app, alice, "US:B000000001", "key-1")
    assert first.credits == 1
    # The same request under the same key, while the first still runs: carried on, free.
    retried = await charge(app, alice, "US:B000000001", "key-1")
    assert (retried.credits, retried.charge_id) == (0, first.charge_id)

    # Another key of the same account is another request: charged.
    other_key = await charge(app, alice, "US:B000000001", "key-2")
    assert other_key.credits == 1 and other_key.charge_id != first.charge_id
    # Another account sending the same key is charged for its own call.
    bobs = await charge(app, bob, "US:B000000001", "key-1")
    assert bobs.credits == 1 and bobs.charge_id != first.charge_id

    assert (await balance(client, alice), await balance(client, bob)) == (8, 9)


async def test_a_retry_carries_on_the_newest_unsettled_charge_of_its_key(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await funded(client, admin)
    # One key used for two different requests (another code each), both still running.
    older = await charge(app, user, "US:B000000001", "reused")
    newer = await charge(app, user, "US:B000000002", "reused")
    assert older.charge_id != newer.charge_id and newer.credits == 1

    # A retry of the second request finds its charge, not the first request's.
    retried = await charge(app, user, "US:B000000002", "reused")
    assert (retried.credits, retried.charge_id) == (0, newer.charge_id)
    assert await balance(client, user) == 8


async def test_the_sweep_refunds_only_charges_older_than_its_horizon_and_says_why(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await funded(client, admin)
    settings = app.state.settings
    horizon = timedelta(seconds=settings.CREDITS_SWEEP_AFTER_SECONDS)
    at = utcnow().replace(microsecond=0) - timedelta(days=1)
    edge = await charge(app, user, "US:B000000001", None, now=at)
    older = await charge(app, user, "US:B000000002", None, now=at - timedelta(seconds=1))
    assert await balance(client, user) == 8

    # Swept at exactly `at + horizon`: the cut-off is `at`, and only what is older goes.
    swept = await credits_service.sweep_unsettled_charges(
        app.state.sessionmaker, settings, now=at + horizon
    )
    assert swept == 1
    async with app.state.sessionmaker() as session:
        rows = await session.execute(select(CreditCharge.id, CreditCharge.outcome))
        outcomes = {charge_id: outcome for charge_id, outcome in rows}
    assert (outcomes[older.charge_id], outcomes[edge.charge_id]) == ("refunded", None)
    refund = (await ledger(app, user.id))[-1]
    assert (refund.kind, refund.amount, refund.endpoint) == ("refund", 1, ENDPOINT)
    assert refund.reference is not None
    assert refund.reference.endswith(": not settled in time")
    assert await balance(client, user) == 9


async def test_a_refund_forgets_only_the_repeat_markers_its_own_charge_wrote(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    alice, bob = await register(client), await register(client)
    at = utcnow().replace(microsecond=0)
    later = at + timedelta(seconds=1)
    markers = [
        (alice.id, ENDPOINT, "US:X", at),  # written by the refunded charge: forgotten
        (alice.id, ENDPOINT, "US:Y", later),  # claimed again by a later charge: kept
        (alice.id, ENDPOINT, "US:Z", at),  # a code the charge did not pay for: kept
        (bob.id, ENDPOINT, "US:X", at),  # another account's: kept
        (alice.id, "fnsku_conversion", "US:X", at),  # another endpoint's: kept
    ]
    async with app.state.sessionmaker() as session:
        session.add_all(
            CreditPaidLookup(user_id=user_id, endpoint=endpoint, code=code, paid_at=paid_at)
            for user_id, endpoint, code, paid_at in markers
        )
        await session.commit()
        await PaidLookupRepository(session).release(alice.id, ENDPOINT, ["US:X", "US:Y"], at)
        await session.commit()
        rows = await session.execute(
            select(CreditPaidLookup.user_id, CreditPaidLookup.endpoint, CreditPaidLookup.code)
            .where(CreditPaidLookup.user_id.in_([alice.id, bob.id]))
            .order_by(CreditPaidLookup.user_id, CreditPaidLookup.endpoint, CreditPaidLookup.code)
        )
        left = [tuple(row) for row in rows]
    assert left == sorted(
        [
            (alice.id, ENDPOINT, "US:Y"),
            (alice.id, ENDPOINT, "US:Z"),
            (bob.id, ENDPOINT, "US:X"),
            (alice.id, "fnsku_conversion", "US:X"),
        ]
    )
