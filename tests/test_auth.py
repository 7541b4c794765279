"""Register, login (form and JSON), refresh rotation with reuse detection, logout.

The failed-login throttle has its own file, `test_login_throttle.py`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from sellerdesk.models import RefreshToken, User
from tests.auth_helpers import (
    LOGIN,
    LOGOUT,
    ME,
    REFRESH,
    REGISTER,
    assert_error,
    assert_no_secrets,
    bearer,
    client_from,
    count_users,
    live_refresh_tokens,
)
from tests.conftest import AppFactory
from tests.factories import PASSWORD, register

# --------------------------------------------------------------------------- register


async def test_register_creates_an_active_non_admin_user_without_password_fields(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        REGISTER,
        json={"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada Lovelace"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert {"id", "email", "full_name", "is_active", "is_superuser", "created_at"} <= set(body)
    assert body["email"] == "ada@example.com"
    assert body["full_name"] == "Ada Lovelace"
    assert body["is_active"] is True
    assert body["is_superuser"] is False
    assert isinstance(body["id"], int) and body["id"] >= 1
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert_no_secrets(response)


async def test_register_without_full_name_gives_null(client: httpx.AsyncClient) -> None:
    response = await client.post(REGISTER, json={"email": "x@example.com", "password": PASSWORD})
    assert response.status_code == 201
    assert response.json()["full_name"] is None


async def test_register_duplicate_email_is_409_conflict(client: httpx.AsyncClient) -> None:
    await register(client, "dup@example.com")
    again = await client.post(REGISTER, json={"email": "dup@example.com", "password": PASSWORD})
    assert_error(again, 409, "conflict")


async def test_register_email_is_case_insensitive(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = await client.post(REGISTER, json={"email": "Mixed@Example.COM", "password": PASSWORD})
    assert first.status_code == 201
    assert first.json()["email"] == "mixed@example.com"
    again = await client.post(REGISTER, json={"email": "MIXED@example.com", "password": PASSWORD})
    assert_error(again, 409, "conflict")
    assert await count_users(app, email="mixed@example.com") == 1
    login = await client.post(LOGIN, json={"email": "mIxEd@EXAMPLE.com", "password": PASSWORD})
    assert login.status_code == 200, login.text


async def test_concurrent_registrations_of_one_email_create_exactly_one_user(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(REGISTER, json={"email": "race@example.com", "password": PASSWORD})
            for _ in range(8)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "conflict")
    assert await count_users(app, email="race@example.com") == 1


@pytest.mark.parametrize(
    "password",
    [
        "8chars!!",
        "x" * 128,
        "        ",  # spaces only: no composition rules
        "pässwörd-ünïcödé",
        "emoji 😀😀😀 and tabs\t\t",
        "'; DROP TABLE user; --",
    ],
)
async def test_any_password_of_8_to_128_characters_is_accepted_and_logs_in(
    client: httpx.AsyncClient, password: str
) -> None:
    account = await register(client, password=password)
    assert account.access_token


@pytest.mark.parametrize("password", ["", "7chars!", "x" * 129, "y" * 1000])
async def test_password_outside_8_to_128_characters_is_422(
    client: httpx.AsyncClient, app: FastAPI, password: str
) -> None:
    response = await client.post(
        REGISTER, json={"email": "short@example.com", "password": password}
    )
    body = assert_error(response, 422, "validation_error")
    assert password not in str(body) or password == ""
    assert await count_users(app, email="short@example.com") == 0


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "", "password": PASSWORD},
        {"password": PASSWORD},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": 12345678},
        {"email": "a\x00b@example.com", "password": PASSWORD},
        {"email": "a@example.com", "password": "nul\x00-in-password"},
        {"email": "a@example.com", "password": PASSWORD, "full_name": "Nul\x00Name"},
        {"email": "a@example.com", "password": PASSWORD, "full_name": "n" * 256},
    ],
)
async def test_register_with_invalid_fields_is_422(
    client: httpx.AsyncClient, payload: dict[str, object]
) -> None:
    assert_error(await client.post(REGISTER, json=payload), 422, "validation_error")


@pytest.mark.parametrize(
    "extra", [{"is_superuser": True}, {"is_active": False}, {"id": 1}, {"hashed_password": "x"}]
)
async def test_register_never_applies_privileged_fields(
    client: httpx.AsyncClient, app: FastAPI, extra: dict[str, object]
) -> None:
    payload = {"email": "mass@example.com", "password": PASSWORD, **extra}
    response = await client.post(REGISTER, json=payload)
    if response.status_code == 201:
        assert response.json()["is_superuser"] is False
        assert response.json()["is_active"] is True
    else:
        assert_error(response, 422, "validation_error")
        assert await count_users(app, email="mass@example.com") == 0


async def test_register_rejects_non_json_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, content=b"email=a@example.com", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 422, "validation_error")
    broken = await client.post(
        REGISTER, content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert_error(broken, 422, "validation_error")


# --------------------------------------------------------------------------- login


async def test_login_with_json_returns_a_bearer_pair(client: httpx.AsyncClient) -> None:
    await register(client, "json@example.com")
    response = await client.post(LOGIN, json={"email": "json@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    assert body["access_token"] and body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]
    me = await client.get(ME, headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == "json@example.com"


@pytest.mark.parametrize("body", ["[" * 30_000 + "]" * 30_000, '{"a":' * 5_000 + "1" + "}" * 5_000])
async def test_a_login_body_nested_deeper_than_the_parser_goes_is_a_422(
    client: httpx.AsyncClient, body: str
) -> None:
    response = await client.post(LOGIN, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


async def test_login_with_oauth2_password_form_returns_a_bearer_pair(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "form@example.com")
    response = await client.post(
        LOGIN,
        data={
            "grant_type": "password",
            "username": "form@example.com",
            "password": PASSWORD,
            "scope": "",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    me = await client.get(ME, headers=bearer(response.json()["access_token"]))
    assert me.json()["email"] == "form@example.com"


async def test_login_with_multipart_form_works(client: httpx.AsyncClient) -> None:
    await register(client, "multi@example.com")
    response = await client.post(
        LOGIN, files={"username": (None, "multi@example.com"), "password": (None, PASSWORD)}
    )
    assert response.status_code == 200, response.text


async def test_wrong_password_and_unknown_email_give_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "known@example.com")
    wrong = await client.post(LOGIN, json={"email": "known@example.com", "password": "nope-nope"})
    unknown = await client.post(
        LOGIN, json={"email": "nobody@example.com", "password": "nope-nope"}
    )
    form_unknown = await client.post(
        LOGIN, data={"username": "nobody@example.com", "password": "nope-nope"}
    )
    bodies = [assert_error(r, 401, "not_authenticated") for r in (wrong, unknown, form_unknown)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "known@example.com" not in wrong.text


async def test_login_of_an_inactive_user_is_403(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await register(client, "sleepy@example.com")
    async with app.state.sessionmaker() as session:
        await session.execute(update(User).where(User.id == account.id).values(is_active=False))
        await session.commit()
    response = await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})
    assert_error(response, 403, "forbidden")
    # The wrong password of an inactive account still answers 401 (nothing revealed).
    wrong = await client.post(LOGIN, json={"email": account.email, "password": "wrong-pass"})
    assert_error(wrong, 401, "not_authenticated")


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"json": {"email": "a@example.com"}},
        {"json": {"password": "whatever1"}},
        {"json": {"email": "not-an-email", "password": "whatever1"}},
        {"json": {"email": "a@example.com", "password": ""}},
        {"json": {"email": "a@example.com", "password": "p" * 129}},
        {"json": {"email": "a@example.com", "password": "x", "extra": 1}},
        {"json": ["a@example.com", "x"]},
        {"data": {"username": "a@example.com"}},
        {"data": {"password": "whatever1"}},
        {"content": b"not json", "headers": {"Content-Type": "application/json"}},
        {"content": b"", "headers": {}},
    ],
)
async def test_malformed_login_bodies_are_422(
    client: httpx.AsyncClient, kwargs: dict[str, object]
) -> None:
    response = await client.post(LOGIN, **kwargs)  # type: ignore[arg-type]
    assert_error(response, 422, "validation_error")


# --------------------------------------------------------------------------- refresh


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


async def test_refresh_rotates_the_pair_and_revokes_the_old_refresh_token(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    first = await _refresh(client, account.refresh_token)
    assert first.status_code == 200, first.text
    pair = first.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != account.refresh_token
    assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
    second = await _refresh(client, pair["refresh_token"])
    assert second.status_code == 200
    assert_no_secrets(second)


async def test_reusing_a_revoked_refresh_token_revokes_its_whole_family(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    other_login = await client.post(
        LOGIN, json={"email": account.email, "password": account.password}
    )
    newest = (await _refresh(client, account.refresh_token)).json()["refresh_token"]
    reused = await _refresh(client, account.refresh_token)
    assert_error(reused, 401, "invalid_token")
    # The newest token of the leaked family is dead too ...
    assert_error(await _refresh(client, newest), 401, "invalid_token")
    # ... while a separate login of the same user (another family) lives on.
    assert (await _refresh(client, other_login.json()["refresh_token"])).status_code == 200
    assert await live_refresh_tokens(app, account.id) == 1


async def test_concurrent_use_of_one_refresh_token_succeeds_at_most_once(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    responses = await asyncio.gather(*(_refresh(client, account.refresh_token) for _ in range(8)))
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) <= 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 200:
            assert_error(response, 401, "invalid_token")


@pytest.mark.parametrize("token", ["not-a-token", "x" * 512, "ünïcode"])
async def test_unknown_refresh_tokens_are_401_invalid_token(
    client: httpx.AsyncClient, token: str
) -> None:
    assert_error(await _refresh(client, token), 401, "invalid_token")


async def test_an_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert_error(await _refresh(client, account.access_token), 401, "invalid_token")


async def test_refresh_with_a_malformed_body_is_422(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(REFRESH, json={}), 422, "validation_error")
    assert_error(await client.post(REFRESH, json={"refresh_token": ""}), 422, "validation_error")
    too_long = {"refresh_token": "x" * 513}
    assert_error(await client.post(REFRESH, json=too_long), 422, "validation_error")


async def test_expired_refresh_token_is_401(make_app: AppFactory) -> None:
    app = await make_app()
    async with client_from(app, "127.0.0.1") as c:
        account = await register(c)
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await session.commit()
        assert_error(await _refresh(c, account.refresh_token), 401, "invalid_token")


# --------------------------------------------------------------------------- logout


async def test_logout_revokes_the_refresh_token(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        LOGOUT, json={"refresh_token": account.refresh_token}, headers=account.headers
    )
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await _refresh(client, account.refresh_token), 401, "invalid_token")
    # Logging out twice is harmless.
    again = await client.post(
        LOGOUT, json={"refresh_token": account.refresh_token}, headers=account.headers
    )
    assert again.status_code == 204


async def test_logout_needs_authentication(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(LOGOUT, json={"refresh_token": account.refresh_token})
    assert_error(response, 401, "not_authenticated")
    assert (await _refresh(client, account.refresh_token)).status_code == 200


async def test_logout_cannot_revoke_another_users_token(client: httpx.AsyncClient) -> None:
    alice, bob = await register(client), await register(client)
    response = await client.post(
        LOGOUT, json={"refresh_token": bob.refresh_token}, headers=alice.headers
    )
    assert_error(response, 401, "invalid_token")
    assert (await _refresh(client, bob.refresh_token)).status_code == 200


async def test_logout_without_a_body_is_422(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert_error(await client.post(LOGOUT, headers=account.headers), 422, "validation_error")


async def test_login_validation_errors_point_at_the_fields_the_client_sent(
    client: httpx.AsyncClient,
) -> None:
    form = await client.post(LOGIN, data={"username": "not-an-email", "password": "x"})
    assert assert_error(form, 422, "validation_error")["details"][0]["loc"] == ["body", "username"]
    body = await client.post(LOGIN, json={"email": "not-an-email", "password": "x"})
    assert assert_error(body, 422, "validation_error")["details"][0]["loc"] == ["body", "email"]
