"""Credits behaviour of the resumed mutation run's survivors (issue 18, docs/mutation.md), each
test written to kill mutants the suite let through: an admin's grant of a single credit is
booked as a grant (not an adjustment), and a grant to an account that does not exist is a 404
that says so; a free repeat of an upstream lookup is counted in the usage as a call that cost
nothing; an upstream lookup of an unknown ASIN is a 404 naming it, refunded; a code looked up
while its endpoint was free is charged once the endpoint costs again; a repeat window of one
second makes a repeat within that second free; a price missing from the database is charged at
its default and logged as an error (and a price in place logs none); prices are listed by
endpoint, also after one of them changed; two attempts racing under one Idempotency-Key take
the credits once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.credits import service as credits_service
from sellerdesk.models import CreditPrice
from tests.conftest import AppFactory, is_postgres
from tests.credits_factories import assert_ledger_consistent, balance, grant, ledger, set_price
from tests.factories import register, register_admin
from tests.test_mutants_credits_run import windowed
from tests.test_paid_call_safety import Setup, build

__all__ = ["windowed"]  # the fixture, imported for pytest

# --------------------------------------------------------------------------- grants


async def test_a_grant_of_a_single_credit_is_booked_as_a_grant(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    granted = await grant(client, admin, user.id, 1, "one for the road")
    assert granted.status_code == 200, granted.text
    assert (granted.json()["kind"], granted.json()["amount"]) == ("grant", 1)
    [entry] = await ledger(app, user.id)
    assert (entry.kind, entry.amount, entry.reference) == ("grant", 1, "one for the road")
    assert await balance(client, user) == 1
    await assert_ledger_consistent(app)


async def test_a_grant_to_an_account_that_does_not_exist_is_a_404_that_says_so(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    missing = await grant(client, admin, 999_999_999, 5)
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"] == "not_found"
    assert missing.json()["message"] == "User not found."


# --------------------------------------------------------------------------- usage


async def test_a_free_repeat_of_an_upstream_lookup_is_counted_as_a_call_that_cost_nothing(
    windowed: Setup,
) -> None:
    user = await windowed.user()
    paid = await windowed.lookup(user)
    assert (paid.status_code, paid.headers["X-Credits-Charged"]) == (200, "1")
    repeat = await windowed.lookup(user)  # the same ASIN inside the repeat window
    assert (repeat.status_code, repeat.headers["X-Credits-Charged"]) == (200, "0")

    usage = await windowed.client.get("/api/v1/credits/usage", headers=user.headers)
    assert usage.status_code == 200, usage.text
    assert [(i["endpoint"], i["calls"], i["credits"]) for i in usage.json()["items"]] == [
        ("asin_lookup", 2, 1)
    ]


# --------------------------------------------------------------------------- not found upstream


async def test_an_upstream_lookup_of_an_unknown_asin_is_a_404_that_names_it_and_costs_nothing(
    windowed: Setup,
) -> None:
    user = await windowed.user()
    unknown = await windowed.lookup(user, 99)  # the account's report maps B000000001..5 only
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["message"] == "ASIN B000000099 is not known in marketplace US."
    assert unknown.headers["X-Credits-Charged"] == "0"
    assert await balance(windowed.client, user) == 10


# --------------------------------------------------------------------------- repeat window


async def test_a_code_looked_up_while_its_endpoint_was_free_is_charged_once_it_costs_again(
    windowed: Setup,
) -> None:
    """A free lookup paid for nothing, so it makes no repeat of the code free later."""
    user = await windowed.user()
    await set_price(windowed.client, windowed.admin, "asin_lookup", 0)
    free = await windowed.lookup(user)
    assert (free.status_code, free.headers["X-Credits-Charged"]) == (200, "0")

    await set_price(windowed.client, windowed.admin, "asin_lookup", 1)
    paid = await windowed.lookup(user)
    assert (paid.status_code, paid.headers["X-Credits-Charged"]) == (200, "1")
    repeat = await windowed.lookup(user)
    assert (repeat.status_code, repeat.headers["X-Credits-Charged"]) == (200, "0")
    assert await balance(windowed.client, user) == 9


@pytest.fixture
async def one_second_window(make_app: AppFactory) -> AsyncIterator[Setup]:
    async for setup in build(make_app, CREDITS_REPEAT_WINDOW=1):
        yield setup


async def test_a_repeat_window_of_one_second_makes_a_repeat_within_that_second_free(
    one_second_window: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = one_second_window
    user = await setup.user()
    clock = [datetime(2026, 12, 1, 12, tzinfo=UTC)]
    monkeypatch.setattr(credits_service, "utcnow", lambda: clock[0])

    charged = []
    for step in (timedelta(0), timedelta(milliseconds=500), timedelta(seconds=1, microseconds=1)):
        clock[0] += step
        answer = await setup.lookup(user)
        assert answer.status_code == 200, answer.text
        charged.append(answer.headers["X-Credits-Charged"])
    # Paid at 0 s; free at 0.5 s; at 1.5 s the payment at 0 s is outside the window again.
    assert charged == ["1", "0", "1"]
    assert await balance(setup.client, user) == 8


# --------------------------------------------------------------------------- prices


def price_missing(caplog: pytest.LogCaptureFixture) -> list[object]:
    """The endpoints of the `price_missing` errors logged so far."""
    return [
        r.msg.get("endpoint")
        for r in caplog.records
        if isinstance(r.msg, dict)
        and r.msg.get("event") == "price_missing"
        and r.levelno == logging.ERROR
    ]


async def test_a_price_missing_from_the_database_is_charged_at_its_default_and_logged(
    windowed: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    user = await windowed.user()
    caplog.set_level(logging.INFO)
    priced = await windowed.lookup(user, 1)
    assert (priced.status_code, priced.headers["X-Credits-Charged"]) == (200, "1")
    assert price_missing(caplog) == []  # the price is in place: nothing to report

    async with windowed.app.state.sessionmaker() as session:
        await session.execute(delete(CreditPrice).where(CreditPrice.endpoint == "asin_lookup"))
        await session.commit()
    windowed.app.state.price_book.invalidate()  # as after a price change
    unpriced = await windowed.lookup(user, 2)
    assert (unpriced.status_code, unpriced.headers["X-Credits-Charged"]) == (200, "1")
    assert price_missing(caplog) == ["asin_lookup"]
    assert await balance(windowed.client, user) == 8


async def test_prices_are_listed_by_endpoint_also_after_one_of_them_changed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    # The change moves the row it changes (PostgreSQL writes a new row version).
    await set_price(client, admin, "asin_lookup", 2)
    listed = await client.get("/api/v1/credits/pricing")
    assert listed.status_code == 200, listed.text
    assert [(p["endpoint"], p["credits"]) for p in listed.json()] == [
        ("asin_lookup", 2),
        ("fnsku_conversion", 1),
    ]


# --------------------------------------------------------------------------- racing attempts


async def until_a_transaction_waits_for_a_lock(app: FastAPI) -> None:
    """PostgreSQL: until another transaction waits on a lock. SQLite: its BEGIN IMMEDIATE waits
    for the write lock, so the second attempt simply runs after the first commits."""
    if not is_postgres():
        await asyncio.sleep(0.2)
        return
    async with app.state.sessionmaker() as session:
        for _ in range(200):
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            await session.rollback()
            if waiting:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the second attempt never waited for the first")


async def test_two_attempts_racing_under_one_idempotency_key_take_the_credits_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Both attempts look for an earlier charge under the key before either commits (every
    call charged: no repeat window); the key's ledger entry lands once, so the second attempt
    is refused instead of charging again (or, on SQLite, runs after the first and carries its
    charge on)."""
    admin = await register_admin(client, app)
    user = await register(client)
    assert (await grant(client, admin, user.id, 10)).status_code == 200

    async def attempt(session: AsyncSession) -> credits_service.Charge:
        return await credits_service.charge(
            session,
            user_id=user.id,
            endpoint="asin_lookup",
            codes=["B000000001"],
            unit_cost=1,
            repeat_window=0,
            reference="B000000001",
            idempotency_key="race-1",
        )

    async def second_attempt() -> None:
        async with app.state.sessionmaker() as session:
            await attempt(session)
            await session.commit()

    async with app.state.sessionmaker() as first:
        made = await attempt(first)
        assert made.credits == 1
        racing = asyncio.ensure_future(second_attempt())
        await until_a_transaction_waits_for_a_lock(app)
        await first.commit()
    await asyncio.gather(racing, return_exceptions=True)

    assert await balance(client, user) == 9
    assert [(e.kind, e.amount) for e in await ledger(app, user.id)] == [
        ("grant", 10),
        ("charge", -1),
    ]
    await assert_ledger_consistent(app)
