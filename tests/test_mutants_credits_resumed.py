"""Credits behaviour of the resumed mutation run's survivors (issue 18, docs/mutation.md), each
test written to kill mutants the suite let through: an admin's grant of a single credit is
booked as a grant (not an adjustment), and a grant to an account that does not exist is a 404
that says so; a free repeat of an upstream lookup is counted in the usage as a call that cost
nothing.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.credits_factories import assert_ledger_consistent, balance, grant, ledger
from tests.factories import register, register_admin
from tests.test_mutants_credits_run import windowed
from tests.test_paid_call_safety import Setup

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
