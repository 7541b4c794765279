"""Supabase mode: HS256 secret and JWKS (RS256) tokens, audience/issuer checks, provisioning."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from tests.auth_helpers import ME, assert_error, bearer, count_users
from tests.conftest import AppFactory
from tests.factories import register
from tests.test_jwt import _b64, unsigned

ISSUER = "https://project.supabase.co/auth/v1"
SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
KID = "supabase-key-1"


def supabase_claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "aud": "authenticated",
        "role": "authenticated",
        "iss": ISSUER,
        "email": f"{uuid.uuid4().hex[:10]}@example.com",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


# --------------------------------------------------------------------------- HS256 secret mode


@pytest.fixture
async def secret_client(make_app: AppFactory) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = await make_app(AUTH_SUPABASE_JWT_SECRET=SECRET, AUTH_SUPABASE_ISSUER=ISSUER)
    async with await _client(app) as c:
        yield c, app


def hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_secret_mode_accepts_an_authenticated_token_and_provisions_the_user_once(
    secret_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    c, app = secret_client
    claims = supabase_claims(email="Supa.User@Example.com")
    first = await c.get(ME, headers=bearer(hs(claims)))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["email"] == "supa.user@example.com"
    assert body["is_active"] is True and body["is_superuser"] is False
    again = await c.get(ME, headers=bearer(hs(supabase_claims(sub=claims["sub"], email=None))))
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert await count_users(app, supabase_id=claims["sub"]) == 1


@pytest.mark.parametrize(
    "proof",
    [
        {"email_verified": True},
        {"email_confirmed_at": "2026-11-30T10:00:00Z"},
        {"app_metadata": {"provider": "email", "email_verified": True}},
    ],
    ids=["email_verified", "email_confirmed_at", "app_metadata"],
)
async def test_secret_mode_links_an_existing_local_account_with_a_verified_email(
    secret_client: tuple[httpx.AsyncClient, FastAPI], proof: dict[str, Any]
) -> None:
    c, _app = secret_client
    local = await register(c, "linked@example.com")
    claims = supabase_claims(email="linked@example.com", **proof)
    response = await c.get(ME, headers=bearer(hs(claims)))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == local.id
    # Linked for good: later tokens of that subject need no proof.
    again = await c.get(ME, headers=bearer(hs(supabase_claims(sub=claims["sub"], email=None))))
    assert again.json()["id"] == local.id
    # The local password login keeps working, and so do our own access tokens.
    assert (await c.get(ME, headers=local.headers)).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"email_verified": False},
        {"email_verified": "true"},
        {"email_confirmed_at": None},
        {"app_metadata": {"email_verified": False}},
        # Users can write their own user_metadata: not believed unless the operator opts in.
        {"user_metadata": {"email_verified": True}},
    ],
    ids=["nothing", "false", "string", "null_confirmed_at", "app_false", "user_metadata"],
)
async def test_an_unverified_email_never_links_an_existing_local_account(
    secret_client: tuple[httpx.AsyncClient, FastAPI], claims: dict[str, Any]
) -> None:
    c, app = secret_client
    local = await register(c, "owner@example.com")
    token = hs(supabase_claims(email="owner@example.com", **claims))
    body = assert_error(await c.get(ME, headers=bearer(token)), 403, "forbidden")
    assert "verify your email" in body["message"]
    assert await count_users(app, email="owner@example.com", supabase_id=None) == 1
    assert (await c.get(ME, headers=local.headers)).status_code == 200


async def test_user_metadata_email_verified_links_when_the_operator_trusts_it(
    make_app: AppFactory,
) -> None:
    app = await make_app(
        AUTH_SUPABASE_JWT_SECRET=SECRET,
        AUTH_SUPABASE_ISSUER=ISSUER,
        AUTH_SUPABASE_TRUST_USER_METADATA=True,
    )
    async with await _client(app) as c:
        local = await register(c, "meta@example.com")
        claims = supabase_claims(email="meta@example.com", user_metadata={"email_verified": True})
        response = await c.get(ME, headers=bearer(hs(claims)))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == local.id


async def test_an_email_linked_to_another_supabase_account_is_refused(
    secret_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    c, _ = secret_client
    first = await c.get(ME, headers=bearer(hs(supabase_claims(email="taken@example.com"))))
    assert first.status_code == 200
    other = await c.get(ME, headers=bearer(hs(supabase_claims(email="taken@example.com"))))
    assert_error(other, 401, "invalid_token")


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "anon", "role": "anon"},
        {"aud": "service_role"},
        {"aud": None},
        {"iss": "https://other.supabase.co/auth/v1"},
        {"iss": None},
        {"exp": int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())},
        {"exp": None},
        {"sub": None},
        {"sub": "s" * 65},
        {"email": None},  # first sight without an email: nothing to provision
    ],
    # Ids must not depend on the clock: every pytest-xdist worker collects the same tests.
    ids=lambda changes: ",".join(
        f"{k}={'past' if k == 'exp' and v else str(v)[:12]}" for k, v in changes.items()
    ),
)
async def test_secret_mode_refuses_unusable_tokens(
    secret_client: tuple[httpx.AsyncClient, FastAPI], changes: dict[str, Any]
) -> None:
    c, app = secret_client
    claims = supabase_claims(**changes)
    response = await c.get(ME, headers=bearer(hs(claims)))
    assert_error(response, 401, "invalid_token")
    assert await count_users(app) == 0


async def test_secret_mode_refuses_a_token_signed_with_another_secret_or_alg_none(
    secret_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    c, app = secret_client
    forged = hs(supabase_claims(), secret="not-the-project-secret-but-long-enough-0123")
    assert_error(await c.get(ME, headers=bearer(forged)), 401, "invalid_token")
    none = unsigned({"alg": "none", "typ": "JWT"}, supabase_claims())
    assert_error(await c.get(ME, headers=bearer(none)), 401, "invalid_token")
    assert await count_users(app) == 0


async def test_concurrent_first_requests_provision_exactly_one_user(
    secret_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    c, app = secret_client
    claims = supabase_claims()
    token = hs(claims)
    responses = await asyncio.gather(*(c.get(ME, headers=bearer(token)) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_users(app, supabase_id=claims["sub"]) == 1


async def test_a_deactivated_supabase_user_is_refused(
    secret_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    from sqlalchemy import update

    from sellerdesk.models import User

    c, app = secret_client
    claims = supabase_claims()
    assert (await c.get(ME, headers=bearer(hs(claims)))).status_code == 200
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(User).where(User.supabase_id == claims["sub"]).values(is_active=False)
        )
        await session.commit()
    response = await c.get(ME, headers=bearer(hs(claims)))
    assert response.status_code in (401, 403)


# --------------------------------------------------------------------------- JWKS mode


class JwksServer:
    """A JWKS document served on 127.0.0.1 by http.server in a thread; counts its hits."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                payload = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/v1/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks(rsa_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
    server = JwksServer({"keys": [jwk]})
    yield server
    server.close()


@pytest.fixture
async def jwks_client(
    make_app: AppFactory, jwks: JwksServer
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = await make_app(AUTH_SUPABASE_JWKS_URL=jwks.url, AUTH_SUPABASE_ISSUER=ISSUER)
    async with await _client(app) as c:
        yield c, app


def rs(key: rsa.RSAPrivateKey, claims: dict[str, Any], kid: str = KID) -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_jwks_mode_accepts_an_rs256_token_and_caches_the_keys(
    jwks_client: tuple[httpx.AsyncClient, FastAPI], jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    c, app = jwks_client
    for _ in range(3):
        claims = supabase_claims()
        for _ in range(3):
            response = await c.get(ME, headers=bearer(rs(rsa_key, claims)))
            assert response.status_code == 200, response.text
            assert response.json()["email"] == claims["email"]
    assert jwks.hits == 1
    assert await count_users(app) == 3


async def test_jwks_mode_concurrent_first_requests_fetch_once_and_provision_once(
    jwks_client: tuple[httpx.AsyncClient, FastAPI], jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    c, app = jwks_client
    claims = supabase_claims()
    token = rs(rsa_key, claims)
    responses = await asyncio.gather(*(c.get(ME, headers=bearer(token)) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert jwks.hits == 1
    assert await count_users(app, supabase_id=claims["sub"]) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "anon", "role": "anon"},
        {"iss": "https://attacker.supabase.co/auth/v1"},
        {"exp": int((datetime.now(UTC) - timedelta(seconds=30)).timestamp())},
    ],
    ids=["anon", "wrong-issuer", "expired"],
)
async def test_jwks_mode_refuses_wrong_audience_issuer_and_expiry(
    jwks_client: tuple[httpx.AsyncClient, FastAPI],
    rsa_key: rsa.RSAPrivateKey,
    changes: dict[str, Any],
) -> None:
    c, app = jwks_client
    response = await c.get(ME, headers=bearer(rs(rsa_key, supabase_claims(**changes))))
    assert_error(response, 401, "invalid_token")
    assert await count_users(app) == 0


def _hs256_with_public_key(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    # The classic algorithm-confusion forgery: HMAC keyed with the public key's PEM.
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = _b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


@pytest.mark.parametrize("issuer", [ISSUER, "sellerdesk"])
async def test_jwks_mode_refuses_hs256_signed_with_the_public_key(
    jwks_client: tuple[httpx.AsyncClient, FastAPI], rsa_key: rsa.RSAPrivateKey, issuer: str
) -> None:
    c, app = jwks_client
    forged = _hs256_with_public_key(rsa_key, supabase_claims(iss=issuer))
    assert_error(await c.get(ME, headers=bearer(forged)), 401, "invalid_token")
    assert await count_users(app) == 0


async def test_jwks_mode_refuses_a_token_signed_by_another_key(
    jwks_client: tuple[httpx.AsyncClient, FastAPI], jwks: JwksServer
) -> None:
    c, _ = jwks_client
    intruder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    same_kid = rs(intruder, supabase_claims())
    assert_error(await c.get(ME, headers=bearer(same_kid)), 401, "invalid_token")
    unknown_kid = rs(intruder, supabase_claims(), kid="unknown")
    for _ in range(5):
        assert_error(await c.get(ME, headers=bearer(unknown_kid)), 401, "invalid_token")
    # Unknown key ids do not make the service hammer the JWKS endpoint.
    assert jwks.hits <= 2


async def test_jwks_mode_refuses_alg_none(jwks_client: tuple[httpx.AsyncClient, FastAPI]) -> None:
    c, _ = jwks_client
    none = unsigned({"alg": "none", "typ": "JWT", "kid": KID}, supabase_claims())
    assert_error(await c.get(ME, headers=bearer(none)), 401, "invalid_token")


async def test_jwks_mode_keeps_accepting_our_own_tokens(
    jwks_client: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    c, _ = jwks_client
    account = await register(c)
    assert (await c.get(ME, headers=account.headers)).status_code == 200


async def test_an_unreachable_jwks_endpoint_is_503_not_a_401(
    make_app: AppFactory, rsa_key: rsa.RSAPrivateKey
) -> None:
    app = await make_app(
        AUTH_SUPABASE_JWKS_URL="http://127.0.0.1:1/jwks.json", AUTH_SUPABASE_ISSUER=ISSUER
    )
    async with await _client(app) as c:
        response = await c.get(ME, headers=bearer(rs(rsa_key, supabase_claims())))
    assert_error(response, 503, "service_unavailable")


async def test_jwks_mode_accepts_es256_keys(make_app: AppFactory) -> None:
    # Supabase's current asymmetric signing keys are ECC P-256 (ES256).
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "ec-1", "use": "sig", "alg": "ES256"})
    server = JwksServer({"keys": [jwk]})
    try:
        app = await make_app(AUTH_SUPABASE_JWKS_URL=server.url, AUTH_SUPABASE_ISSUER=ISSUER)
        async with await _client(app) as c:
            claims = supabase_claims()
            token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "ec-1"})
            response = await c.get(ME, headers=bearer(token))
            assert response.status_code == 200, response.text
            assert response.json()["email"] == claims["email"]
            # The same key announced as RS256 in the header is refused.
            mislabeled = unsigned({"alg": "RS256", "kid": "ec-1"}, claims, token.split(".")[2])
            assert_error(await c.get(ME, headers=bearer(mislabeled)), 401, "invalid_token")
    finally:
        server.close()
