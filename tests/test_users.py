"""`/users/me` (no mass assignment, password change) and admin listing and changes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from sellerdesk.auth.tokens import hash_refresh_token
from sellerdesk.models import RefreshToken
from tests.auth_helpers import (
    LOGIN,
    ME,
    REFRESH,
    USERS,
    assert_error,
    assert_no_secrets,
    live_refresh_tokens,
    user_row,
)
from tests.factories import PASSWORD, Account, register, register_admin

# --------------------------------------------------------------------------- /users/me


async def test_me_returns_the_callers_account(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == account.id
    assert body["email"] == account.email
    assert {"id", "email", "full_name", "is_active", "is_superuser", "created_at"} <= set(body)
    assert_no_secrets(response)


async def test_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(ME), 401, "not_authenticated")
    assert_error(await client.patch(ME, json={"full_name": "x"}), 401, "not_authenticated")


async def test_patch_me_changes_the_full_name(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.patch(ME, json={"full_name": "Grace Hopper"}, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Grace Hopper"
    assert (await client.get(ME, headers=account.headers)).json()["full_name"] == "Grace Hopper"
    cleared = await client.patch(ME, json={"full_name": None}, headers=account.headers)
    assert cleared.json()["full_name"] is None
    unchanged = await client.patch(ME, json={}, headers=account.headers)
    assert unchanged.status_code == 200
    assert unchanged.json()["full_name"] is None
    assert_no_secrets(unchanged)


@pytest.mark.parametrize(
    "field",
    [
        {"is_superuser": True},
        {"is_active": False},
        {"email": "new@example.com"},
        {"id": 999},
        {"hashed_password": "x"},
        {"supabase_id": "abc"},
        {"created_at": "2020-01-01T00:00:00Z"},
    ],
)
async def test_patch_me_never_applies_privileged_fields(
    client: httpx.AsyncClient, app: FastAPI, field: dict[str, object]
) -> None:
    account = await register(client)
    response = await client.patch(ME, json={"full_name": "Eve", **field}, headers=account.headers)
    if response.status_code == 200:
        body = response.json()
        assert body["is_superuser"] is False and body["is_active"] is True
        assert body["email"] == account.email and body["id"] == account.id
    else:
        assert_error(response, 422, "validation_error")
    row = await user_row(app, account.email)
    assert row is not None
    assert row.is_superuser is False and row.is_active is True and row.supabase_id is None
    assert row.full_name is None  # a refused body changes nothing at all


async def test_patch_me_password_needs_the_current_password(client: httpx.AsyncClient) -> None:
    account = await register(client)
    missing = await client.patch(ME, json={"password": "a-new-password"}, headers=account.headers)
    assert_error(missing, 422, "validation_error")
    wrong = await client.patch(
        ME,
        json={"password": "a-new-password", "current_password": "not-my-password"},
        headers=account.headers,
    )
    assert_error(wrong, 422, "validation_error")
    old_login = await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})
    assert old_login.status_code == 200


async def test_patch_me_password_change_takes_effect_and_ends_other_sessions(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    account = await register(client)
    response = await client.patch(
        ME,
        json={"password": "a-brand-new-password", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    assert_no_secrets(response)
    old = await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})
    assert_error(old, 401, "not_authenticated")
    new = await client.post(
        LOGIN, json={"email": account.email, "password": "a-brand-new-password"}
    )
    assert new.status_code == 200
    stale = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert_error(stale, 401, "invalid_token")
    assert await live_refresh_tokens(app, account.id) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"password": "short", "current_password": PASSWORD},
        {"password": "p" * 129, "current_password": PASSWORD},
        {"full_name": "n" * 256},
        {"full_name": "nul\x00"},
        {"full_name": 42},
    ],
)
async def test_patch_me_with_invalid_values_is_422(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    account = await register(client)
    assert_error(
        await client.patch(ME, json=body, headers=account.headers), 422, "validation_error"
    )


# --------------------------------------------------------------------------- admin


async def test_admin_lists_users_paginated_oldest_first(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    others = [await register(client) for _ in range(4)]
    first = await client.get(USERS, params={"page": 1, "page_size": 2}, headers=admin.headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["total"] == 5
    assert body["page"] == 1 and body["page_size"] == 2
    assert [u["id"] for u in body["items"]] == [admin.id, others[0].id]
    third = await client.get(USERS, params={"page": 3, "page_size": 2}, headers=admin.headers)
    assert [u["id"] for u in third.json()["items"]] == [others[3].id]
    past = await client.get(USERS, params={"page": 99, "page_size": 2}, headers=admin.headers)
    assert past.status_code == 200
    assert past.json()["items"] == [] and past.json()["total"] == 5
    default = await client.get(USERS, headers=admin.headers)
    assert default.json()["page"] == 1 and default.json()["page_size"] == 20
    assert_no_secrets(default)


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"page": -1},
        {"page": 1_000_001},
        {"page": "abc"},
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": "x"},
    ],
)
async def test_admin_list_page_bounds_are_422(
    client: httpx.AsyncClient, app: FastAPI, params: dict[str, object]
) -> None:
    admin = await register_admin(client, app)
    response = await client.get(USERS, params=params, headers=admin.headers)
    assert_error(response, 422, "validation_error")


async def test_admin_list_accepts_the_extreme_valid_bounds(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    response = await client.get(
        USERS, params={"page": 1_000_000, "page_size": 100}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_admin_routes_are_403_for_non_admins_and_401_without_token(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    assert_error(await client.get(USERS, headers=user.headers), 403, "forbidden")
    patch = await client.patch(
        f"{USERS}/{user.id}", json={"is_superuser": True}, headers=user.headers
    )
    assert_error(patch, 403, "forbidden")
    assert (await client.get(ME, headers=user.headers)).json()["is_superuser"] is False
    assert_error(await client.get(USERS), 401, "not_authenticated")
    assert_error(await client.patch(f"{USERS}/1", json={}), 401, "not_authenticated")


async def test_admin_promotes_and_demotes_a_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    promoted = await client.patch(
        f"{USERS}/{user.id}", json={"is_superuser": True}, headers=admin.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["is_superuser"] is True and promoted.json()["id"] == user.id
    assert (await client.get(USERS, headers=user.headers)).status_code == 200
    demoted = await client.patch(
        f"{USERS}/{user.id}", json={"is_superuser": False}, headers=admin.headers
    )
    assert demoted.json()["is_superuser"] is False
    assert_error(await client.get(USERS, headers=user.headers), 403, "forbidden")


async def _deactivate(client: httpx.AsyncClient, admin: Account, user: Account) -> None:
    response = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False


async def test_deactivating_a_user_stops_their_tokens_at_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    await _deactivate(client, admin, user)
    me = await client.get(ME, headers=user.headers)
    assert me.status_code in (401, 403)
    assert me.json()["error"] in ("invalid_token", "forbidden")
    refresh = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert refresh.status_code in (401, 403)
    login = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
    assert_error(login, 403, "forbidden")
    reactivated = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": True}, headers=admin.headers
    )
    assert reactivated.json()["is_active"] is True
    login = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200


async def test_a_deactivated_admin_loses_admin_access_at_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    other_admin = await register_admin(client, app)
    await _deactivate(client, admin, other_admin)
    response = await client.get(USERS, headers=other_admin.headers)
    assert response.status_code in (401, 403)


async def test_an_admin_cannot_lock_themselves_out(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await register_admin(client, app)
    for change in ({"is_active": False}, {"is_superuser": False}):
        response = await client.patch(f"{USERS}/{admin.id}", json=change, headers=admin.headers)
        assert_error(response, 409, "conflict")
    assert (await client.get(USERS, headers=admin.headers)).status_code == 200


async def test_admin_patch_of_an_unknown_user_is_404(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    for user_id in (999_999, 2**63 - 1):
        response = await client.patch(
            f"{USERS}/{user_id}", json={"is_active": False}, headers=admin.headers
        )
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize("user_id", ["0", "-1", str(2**63), str(10**30), "abc", "1.5", "1e3"])
async def test_admin_patch_with_an_out_of_range_id_is_404_or_422(
    client: httpx.AsyncClient, app: FastAPI, user_id: str
) -> None:
    admin = await register_admin(client, app)
    response = await client.patch(
        f"{USERS}/{user_id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code in (404, 422), response.text
    assert response.json()["error"] in ("not_found", "validation_error")


@pytest.mark.parametrize(
    "body",
    [
        {"is_active": "maybe"},
        {"is_superuser": None, "email": "x@example.com"},
        {"password": "new-password-1"},
        {"full_name": "x"},
        [],
    ],
)
async def test_admin_patch_refuses_other_fields(
    client: httpx.AsyncClient, app: FastAPI, body: object
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    response = await client.patch(f"{USERS}/{user.id}", json=body, headers=admin.headers)
    assert_error(response, 422, "validation_error")
    row = await user_row(app, user.email)
    assert row is not None and row.full_name is None and row.email == user.email


# --------------------------------------------------------------------------- ending sessions


async def _login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    response = await client.post(LOGIN, json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def test_a_password_change_ends_every_token_issued_before_it(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    laptop = await _login(client, account.email, PASSWORD)  # a second session
    changed = await client.patch(
        ME,
        json={"password": "a-brand-new-password", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200, changed.text
    for session in ({"access": account.access_token}, {"access": laptop["access_token"]}):
        stale = await client.get(ME, headers={"Authorization": f"Bearer {session['access']}"})
        body = assert_error(stale, 401, "invalid_token")
        assert "log in again" in body["message"]
    for refresh_token in (account.refresh_token, laptop["refresh_token"]):
        stale = await client.post(REFRESH, json={"refresh_token": refresh_token})
        assert_error(stale, 401, "invalid_token")
    # A token issued right after the change, in the same second, works.
    fresh = await _login(client, account.email, "a-brand-new-password")
    me = await client.get(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert me.status_code == 200, me.text
    rotated = await client.post(REFRESH, json={"refresh_token": fresh["refresh_token"]})
    assert rotated.status_code == 200, rotated.text


async def test_a_refresh_token_issued_concurrently_with_a_password_change_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # A refresh racing a password change can store a new refresh token that the change's
    # revocation did not see; it still carries the old token version, so it is refused.
    account = await register(client)
    racing = await _login(client, account.email, PASSWORD)
    changed = await client.patch(
        ME,
        json={"password": "a-brand-new-password", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200
    async with app.state.sessionmaker() as session:  # the row the racing refresh committed
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == hash_refresh_token(racing["refresh_token"]))
            .values(revoked_at=None)
        )
        await session.commit()
    stale = await client.post(REFRESH, json={"refresh_token": racing["refresh_token"]})
    assert_error(stale, 401, "invalid_token")


async def test_deactivation_ends_every_token_even_after_reactivation(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await register(client)
    await _deactivate(client, admin, user)
    back = await client.patch(f"{USERS}/{user.id}", json={"is_active": True}, headers=admin.headers)
    assert back.json()["is_active"] is True
    assert_error(await client.get(ME, headers=user.headers), 401, "invalid_token")
    stale = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert_error(stale, 401, "invalid_token")
    fresh = await _login(client, user.email, PASSWORD)
    me = await client.get(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert me.status_code == 200


async def test_other_users_tokens_survive_a_password_change(client: httpx.AsyncClient) -> None:
    changer = await register(client)
    bystander = await register(client)
    changed = await client.patch(
        ME,
        json={"password": "a-brand-new-password", "current_password": PASSWORD},
        headers=changer.headers,
    )
    assert changed.status_code == 200
    assert (await client.get(ME, headers=bystander.headers)).status_code == 200
    again = await client.post(REFRESH, json={"refresh_token": bystander.refresh_token})
    assert again.status_code == 200
