"""The failed-login throttle: per account and address, per address, and the account ceiling.

Only a wrong password counts; a database error during login leaves nothing behind; the throttle
fails closed (503 with `Retry-After`) while Redis is down and heals as soon as it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from sellerdesk.db import create_sessionmaker
from sellerdesk.models import User
from tests.auth_helpers import LOGIN, ME, assert_error, bearer, client_from
from tests.conftest import AppFactory
from tests.factories import PASSWORD, register
from tests.private_redis import PrivateRedis, free_port


def _assert_rate_limited(response: httpx.Response) -> None:
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 60


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def _fail(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await _login(client, email, "wrong-password")


@pytest.fixture
async def from_ip(app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Clients of the default app by address: `from_ip["10.0.0.7"]` (opened on first use)."""
    opened: dict[str, httpx.AsyncClient] = {}

    class Clients(dict[str, httpx.AsyncClient]):
        def __missing__(self, ip: str) -> httpx.AsyncClient:
            opened[ip] = self[ip] = client_from(app, ip)
            return opened[ip]

    yield Clients()
    for c in opened.values():
        await c.aclose()


async def _app_with_limits(
    make_app: AppFactory, account_address: str, address: str, account: str
) -> FastAPI:
    return await make_app(
        LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS=account_address,
        LOGIN_FAILURE_LIMIT_PER_ADDRESS=address,
        LOGIN_FAILURE_LIMIT_PER_ACCOUNT=account,
    )


# --------------------------------------------------------------------------- the rules


async def test_ten_wrong_passwords_from_ten_addresses_never_lock_the_owner_out(
    client: httpx.AsyncClient, from_ip: dict[str, httpx.AsyncClient]
) -> None:
    await register(client, "target@example.com")
    for n in range(1, 11):
        assert (await _fail(from_ip[f"10.0.0.{n}"], "target@example.com")).status_code == 401
    # The account's ceiling is reached: addresses that failed for it are refused, even with
    # the right password...
    _assert_rate_limited(await _fail(from_ip["10.0.0.1"], "target@example.com"))
    _assert_rate_limited(await _login(from_ip["10.0.0.2"], "target@example.com", PASSWORD))
    # ...but the owner, from an address that has not failed, logs in.
    owner = await _login(from_ip["10.0.0.11"], "target@example.com", PASSWORD)
    assert owner.status_code == 200, owner.text
    me = await from_ip["10.0.0.11"].get(ME, headers=bearer(owner.json()["access_token"]))
    assert me.status_code == 200


async def test_wrong_passwords_for_one_account_lock_only_that_address_for_it(
    make_app: AppFactory,
) -> None:
    app = await make_app(LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS="3/minute")
    async with client_from(app, "10.0.1.1") as here, client_from(app, "10.0.1.2") as there:
        await register(there, "owner@example.com")
        await register(there, "other@example.com")
        for _ in range(3):
            assert (await _fail(here, "owner@example.com")).status_code == 401
        _assert_rate_limited(await _fail(here, "owner@example.com"))
        _assert_rate_limited(await _login(here, "owner@example.com", PASSWORD))
        # The same address may still log in to another account, and the owner elsewhere.
        assert (await _login(here, "other@example.com", PASSWORD)).status_code == 200
        assert (await _login(there, "owner@example.com", PASSWORD)).status_code == 200


async def test_wrong_passwords_from_one_address_lock_it_for_every_account(
    make_app: AppFactory,
) -> None:
    app = await make_app(LOGIN_FAILURE_LIMIT_PER_ADDRESS="5/minute")
    async with client_from(app, "10.0.2.1") as attacker, client_from(app, "10.0.2.2") as other:
        await register(other, "someone@example.com")
        for n in range(5):
            assert (await _fail(attacker, f"victim{n}@example.com")).status_code == 401
        _assert_rate_limited(await _fail(attacker, "fresh@example.com"))
        _assert_rate_limited(await _login(attacker, "someone@example.com", PASSWORD))
        form = await attacker.post(LOGIN, data={"username": "f@example.com", "password": "x" * 9})
        _assert_rate_limited(form)
        # Another address gets ordinary answers.
        assert_error(await _fail(other, "fresh@example.com"), 401, "not_authenticated")
        assert (await _login(other, "someone@example.com", PASSWORD)).status_code == 200


async def test_unknown_emails_count_like_wrong_passwords(make_app: AppFactory) -> None:
    app = await make_app(LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS="2/minute")
    async with client_from(app, "10.0.3.1") as c:
        for _ in range(2):
            assert (await _fail(c, "nobody@example.com")).status_code == 401
        _assert_rate_limited(await _fail(c, "nobody@example.com"))


async def test_successful_logins_never_count(make_app: AppFactory) -> None:
    app = await _app_with_limits(make_app, "2/minute", "2/minute", "2/minute")
    async with client_from(app, "10.0.4.1") as c:
        await register(c, "often@example.com")
        for _ in range(10):
            assert (await _login(c, "often@example.com", PASSWORD)).status_code == 200


async def test_a_successful_login_forgets_its_address_failures_for_that_account(
    make_app: AppFactory,
) -> None:
    app = await make_app(LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS="3/minute")
    async with client_from(app, "10.0.5.1") as c:
        await register(c, "forgetful@example.com")
        for _ in range(2):
            assert (await _fail(c, "forgetful@example.com")).status_code == 401
        assert (await _login(c, "forgetful@example.com", PASSWORD)).status_code == 200
        for _ in range(3):  # a whole new allowance
            assert (await _fail(c, "forgetful@example.com")).status_code == 401
        _assert_rate_limited(await _fail(c, "forgetful@example.com"))


async def test_an_inactive_account_with_the_right_password_is_403_and_not_a_failure(
    make_app: AppFactory,
) -> None:
    app = await make_app(LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS="2/minute")
    async with client_from(app, "10.0.6.1") as c:
        account = await register(c, "sleepy@example.com")
        async with app.state.sessionmaker() as session:
            await session.execute(update(User).where(User.id == account.id).values(is_active=False))
            await session.commit()
        for _ in range(4):
            assert_error(await _login(c, "sleepy@example.com", PASSWORD), 403, "forbidden")


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_guesses_from_one_address_cannot_overshoot_its_limit(
    make_app: AppFactory,
) -> None:
    app = await make_app(LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS="10/minute")
    async with client_from(app, "10.0.7.1") as c:
        await register(c, "burst@example.com")
        responses = await asyncio.gather(*(_fail(c, "burst@example.com") for _ in range(30)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 10 + [429] * 20


async def test_concurrent_guesses_cannot_overshoot_the_account_ceiling(
    make_app: AppFactory,
) -> None:
    app = await _app_with_limits(make_app, "100/minute", "100/minute", account="10/minute")
    async with client_from(app, "10.0.8.1") as c:
        await register(c, "ceiling@example.com")
        assert (await _fail(c, "ceiling@example.com")).status_code == 401
        # This address has failed for the account: the account's ceiling (10) binds it.
        responses = await asyncio.gather(*(_fail(c, "ceiling@example.com") for _ in range(30)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 9 + [429] * 21


# --------------------------------------------------------------------------- outages


async def test_a_database_outage_during_login_leaves_no_failure_behind(
    make_app: AppFactory,
) -> None:
    app = await _app_with_limits(make_app, "3/minute", "3/minute", "3/minute")
    async with client_from(app, "10.0.9.1") as c:
        await register(c, "patient@example.com")
        # The database goes away: every login fails with a server error, right or wrong
        # password, more often than any limit allows.
        working = app.state.sessionmaker
        dead = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
        app.state.sessionmaker = create_sessionmaker(dead)
        try:
            for password in [PASSWORD, "wrong-password"] * 5:
                response = await _login(c, "patient@example.com", password)
                assert response.status_code >= 500, response.text
        finally:
            app.state.sessionmaker = working
            await dead.dispose()
        # Back: the owner logs in from the same address, and the whole allowance is left.
        assert (await _login(c, "patient@example.com", PASSWORD)).status_code == 200
        for _ in range(3):
            assert (await _fail(c, "patient@example.com")).status_code == 401
        _assert_rate_limited(await _fail(c, "patient@example.com"))


async def test_login_fails_closed_with_retry_after_when_redis_is_unreachable(
    make_app: AppFactory,
) -> None:
    app = await make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    async with client_from(app, "10.0.10.1") as c:
        response = await _login(c, "a@example.com", "whatever1")
        assert_error(response, 503, "service_unavailable")
        assert int(response.headers["Retry-After"]) >= 1
        assert "x-request-id" in response.headers


async def test_login_works_again_as_soon_as_redis_is_back_after_a_restart(
    make_app: AppFactory, private_redis: PrivateRedis
) -> None:
    app = await make_app(
        REDIS_URL=private_redis.url, LOGIN_FAILURE_LIMIT_PER_ACCOUNT_ADDRESS="50/minute"
    )
    async with client_from(app, "10.0.11.1") as c:
        await register(c, "steady@example.com")
        # Several logins at once leave several pooled connections to Redis.
        warm = await asyncio.gather(*(_login(c, "steady@example.com", PASSWORD) for _ in range(8)))
        assert {r.status_code for r in warm} == {200}

        private_redis.stop()
        down = await _login(c, "steady@example.com", PASSWORD)
        assert_error(down, 503, "service_unavailable")
        assert int(down.headers["Retry-After"]) >= 1

        private_redis.start()  # same port, empty: every pooled connection is now dead
        back = await asyncio.gather(*(_login(c, "steady@example.com", PASSWORD) for _ in range(8)))
        assert [r.status_code for r in back] == [200] * 8, [r.text for r in back]
        # And failures are counted in the new Redis.
        assert (await _fail(c, "steady@example.com")).status_code == 401
