"""Access-token attacks: every unusable Bearer token is 401 `invalid_token`, none is a 500."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from tests.auth_helpers import ME, assert_error, bearer
from tests.factories import Account, register


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    """A token assembled by hand (for headers PyJWT refuses to produce)."""
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), signature]
    )


def claims_for(account: Account, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(account.id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "type": "access",
        "iss": "sellerdesk",
        "jti": uuid.uuid4().hex,
        "ver": 0,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def sign(app: FastAPI, claims: dict[str, Any], **kwargs: Any) -> str:
    return jwt.encode(claims, app.state.settings.SECRET_KEY, algorithm="HS256", **kwargs)


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    return await register(client)


async def test_a_well_formed_token_of_ours_is_accepted(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> None:
    # The forged-token cases below differ from this one in exactly one respect.
    response = await client.get(ME, headers=bearer(sign(app, claims_for(account))))
    assert response.status_code == 200, response.text


async def test_no_authorization_header_is_401_not_authenticated(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(ME)
    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc"])
async def test_non_bearer_authorization_is_401_not_authenticated(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.get(ME, headers={"Authorization": header})
    assert_error(response, 401, "not_authenticated")


async def test_alg_none_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> None:
    for alg in ("none", "None", "NONE"):
        token = unsigned({"alg": alg, "typ": "JWT"}, claims_for(account))
        assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_another_hmac_algorithm_than_the_pinned_one_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> None:
    token = jwt.encode(claims_for(account), app.state.settings.SECRET_KEY, algorithm="HS512")
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


async def test_expired_token_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    token = sign(app, claims_for(account, exp=int(past.timestamp())))
    body = assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")
    assert "expired" in body["message"]


@pytest.mark.parametrize("issuer", ["evil", "", "https://example.supabase.co/auth/v1"])
async def test_wrong_issuer_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account, issuer: str
) -> None:
    token = sign(app, claims_for(account, iss=issuer))
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("missing", ["exp", "sub", "iat", "type", "iss", "jti", "ver"])
async def test_missing_required_claim_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account, missing: str
) -> None:
    claims = claims_for(account)
    del claims[missing]
    assert_error(await client.get(ME, headers=bearer(sign(app, claims))), 401, "invalid_token")


@pytest.mark.parametrize(
    "changes",
    [{"ver": 1}, {"ver": -1}, {"ver": "0"}, {"ver": True}, {"ver": 0.0}, {"jti": ""}, {"jti": 7}],
    ids=lambda changes: ",".join(f"{k}={v!r}" for k, v in changes.items()),
)
async def test_a_wrong_token_version_or_id_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account, changes: dict[str, Any]
) -> None:
    token = sign(app, claims_for(account, **changes))
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


async def test_every_access_token_carries_its_own_id(
    client: httpx.AsyncClient, account: Account
) -> None:
    again = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    ids = {
        jwt.decode(token, options={"verify_signature": False})["jti"]
        for token in (account.access_token, again.json()["access_token"])
    }
    assert len(ids) == 2 and all(isinstance(i, str) and len(i) >= 16 for i in ids)


@pytest.mark.parametrize("kind", ["refresh", "ACCESS", "", "id"])
async def test_wrong_token_type_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account, kind: str
) -> None:
    token = sign(app, claims_for(account, type=kind))
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("subject", ["abc", "0", "-1", "1.5", str(2**63), "999999999", 5, ""])
async def test_bad_or_unknown_subject_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account, subject: object
) -> None:
    token = sign(app, claims_for(account, sub=subject))
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


async def test_tampered_signature_is_rejected(client: httpx.AsyncClient, account: Account) -> None:
    head, payload, signature = account.access_token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = f"{head}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "invalid_token")


async def test_tampered_payload_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> None:
    other = await register(client)
    head, _, signature = account.access_token.split(".")
    payload = _b64(json.dumps(claims_for(other)).encode())
    forged = f"{head}.{payload}.{signature}"
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "invalid_token")


async def test_token_signed_with_another_secret_is_rejected(
    client: httpx.AsyncClient, account: Account
) -> None:
    token = jwt.encode(claims_for(account), "another-secret-of-enough-length-0123456789")
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "x" * 5000,
        "ünïcode.tøken.here",
    ],
)
async def test_garbage_tokens_are_rejected(client: httpx.AsyncClient, token: str) -> None:
    header = f"Bearer {token}".encode()  # raw bytes: non-ASCII must not crash anything
    response = await client.get(ME, headers={"Authorization": header})
    assert_error(response, 401, "invalid_token")


async def test_a_refresh_token_is_not_an_access_token(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.get(ME, headers=bearer(account.refresh_token))
    assert_error(response, 401, "invalid_token")


async def test_invalid_token_answers_carry_www_authenticate(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(ME, headers=bearer("garbage"))
    assert response.headers["WWW-Authenticate"] == "Bearer"
