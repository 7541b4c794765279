"""Service routes, the error shape on every error, middleware headers, CORS and OpenAPI."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.db import SessionDep
from sellerdesk.models import User
from tests.auth_helpers import ME, REGISTER, USERS, assert_error, count_users
from tests.conftest import AppFactory
from tests.factories import PASSWORD, register


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


# --------------------------------------------------------------------------- service routes


async def test_root_names_the_service_and_its_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["message"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", body["version"])


async def test_health_is_always_healthy(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


async def test_ready_checks_the_database_and_redis_when_configured(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    if app.state.settings.REDIS_URL:
        assert body["checks"]["redis"] == "ok"
    else:
        assert "redis" not in body["checks"]


async def test_ready_is_503_when_redis_is_unreachable(make_app: AppFactory) -> None:
    app = await make_app(REDIS_URL="redis://127.0.0.1:1/0")
    async with _client(app) as c:
        response = await c.get("/health/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"] == {"database": "ok", "redis": "unavailable"}
        # Liveness does not depend on the dependencies.
        assert (await c.get("/health")).status_code == 200


async def test_ready_is_503_when_the_database_is_unreachable(make_app: AppFactory) -> None:
    app = await make_app(DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    async with _client(app) as c:
        response = await c.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert (await client.get("/openapi.json")).status_code == 200


# --------------------------------------------------------------------------- error shape


async def test_body_validation_error_has_the_contract_shape_without_inputs(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        REGISTER, json={"email": "nope", "password": "secret-but-short"[:7]}
    )
    body = assert_error(response, 422, "validation_error")
    assert isinstance(body["details"], list) and body["details"]
    for item in body["details"]:
        assert set(item) == {"loc", "msg", "type"}
        assert item["loc"][0] == "body"
    assert "secret-" not in response.text  # inputs (passwords!) are never echoed


async def test_query_validation_error_has_the_contract_shape(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    from tests.factories import register_admin

    admin = await register_admin(client, app)
    response = await client.get(USERS, params={"page_size": "lots"}, headers=admin.headers)
    body = assert_error(response, 422, "validation_error")
    assert body["details"][0]["loc"] == ["query", "page_size"]


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v1/users/me/extra", "/api//v1"])
async def test_unknown_route_is_404_not_found(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404, "not_found")


async def test_wrong_method_is_405_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers.get("allow", "")
    assert_error(await client.get(REGISTER), 405, "method_not_allowed")


async def test_nul_in_text_is_422(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.patch(ME, json={"full_name": "a\u0000b"}, headers=account.headers)
    assert_error(response, 422, "validation_error")
    escaped = await client.patch(
        ME,
        content=b'{"full_name": "a\\u0000b"}',
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert_error(escaped, 422, "validation_error")
    path = await client.patch(f"{USERS}/%00", json={}, headers=account.headers)
    assert path.status_code in (403, 404, 422)


@pytest.fixture
async def small_body_app(make_app: AppFactory) -> FastAPI:
    return await make_app(MAX_REQUEST_BODY_BYTES=1024)


async def test_a_declared_body_over_the_limit_is_413(small_body_app: FastAPI) -> None:
    payload = {"email": "big@example.com", "password": PASSWORD, "full_name": "x" * 2000}
    async with _client(small_body_app) as c:
        response = await c.post(REGISTER, json=payload, headers={"X-Request-ID": "big-1"})
        assert_error(response, 413, "payload_too_large")
        assert response.headers["X-Request-ID"] == "big-1"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        small = await c.post(REGISTER, json={"email": "small@example.com", "password": PASSWORD})
        assert small.status_code == 201
    assert await count_users(small_body_app, email="big@example.com") == 0


async def _chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"email": "streamed@example.com", "password": "' + PASSWORD.encode() + b'", '
    yield b'"full_name": "'
    for _ in range(total // 256):
        yield b"y" * 256
    yield b'"}'


@pytest.mark.parametrize("path", [REGISTER, "/api/v1/auth/login"])
async def test_a_streamed_body_over_the_limit_is_413(small_body_app: FastAPI, path: str) -> None:
    async with _client(small_body_app) as c:
        request = c.build_request(
            "POST", path, content=_chunks(4096), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in request.headers
        response = await c.send(request)
    assert_error(response, 413, "payload_too_large")
    assert await count_users(small_body_app, email="streamed@example.com") == 0


async def _explode(session: SessionDep) -> None:
    """A route that writes and then crashes, like a bug would."""
    session.add(User(email="half-written@example.com", hashed_password="x"))
    await session.flush()
    raise RuntimeError("secret internals: password=hunter2 at /srv/app.py line 42")


@pytest.fixture
async def crashing_app(make_app: AppFactory) -> FastAPI:
    app = await make_app()
    app.add_api_route("/boom", _explode, methods=["POST"])
    return app


async def test_an_unexpected_exception_is_500_internal_error_without_internals(
    crashing_app: FastAPI,
) -> None:
    async with _client(crashing_app) as c:
        response = await c.post("/boom")
        body = assert_error(response, 500, "internal_error")
        request_id = response.headers["X-Request-ID"]
        assert request_id and request_id in body["message"]
        assert body["details"] == {"request_id": request_id}
        assert "hunter2" not in response.text and "Traceback" not in response.text
        assert "RuntimeError" not in response.text
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        echoed = await c.post("/boom", headers={"X-Request-ID": "trace-me-123"})
        assert echoed.headers["X-Request-ID"] == "trace-me-123"
        assert echoed.json()["details"]["request_id"] == "trace-me-123"
    # The request's transaction was rolled back: nothing half-written.
    assert await count_users(crashing_app, email="half-written@example.com") == 0


async def test_an_unhandled_integrity_error_is_409_conflict(make_app: AppFactory) -> None:
    app = await make_app()

    async def duplicate(session: SessionDep) -> dict[str, str]:
        for _ in range(2):
            session.add(User(email="twice@example.com", hashed_password="x"))
            await session.flush()
        return {}

    app.add_api_route("/twice", duplicate, methods=["POST"])
    async with _client(app) as c:
        assert_error(await c.post("/twice"), 409, "conflict")


# --------------------------------------------------------------------------- headers


async def test_request_id_is_echoed_when_given_and_generated_otherwise(
    client: httpx.AsyncClient,
) -> None:
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123_x.y:z"})
    assert echoed.headers["X-Request-ID"] == "abc-123_x.y:z"
    first = (await client.get("/health")).headers["X-Request-ID"]
    second = (await client.get("/health")).headers["X-Request-ID"]
    assert first and second and first != second
    # A hostile value (header injection, absurd length) is replaced, not reflected.
    hostile = await client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["X-Request-ID"] != "x" * 500
    spaces = await client.get("/health", headers={"X-Request-ID": "a b<script>"})
    assert spaces.headers["X-Request-ID"] != "a b<script>"


async def test_every_response_carries_request_id_and_security_headers(
    client: httpx.AsyncClient,
) -> None:
    responses = [
        await client.get("/"),
        await client.get("/health"),
        await client.get("/nope"),
        await client.delete("/health"),
        await client.get(ME),
        await client.post(REGISTER, json={}),
        await client.options("/health"),
    ]
    for response in responses:
        assert response.headers["X-Request-ID"], response.request.url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in response.headers


async def test_hsts_only_when_the_request_came_over_https(client: httpx.AsyncClient) -> None:
    plain = await client.get("/health")
    assert "Strict-Transport-Security" not in plain.headers
    proxied = await client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=client._transport.app),  # type: ignore[attr-defined]
        base_url="https://test",
    ) as tls:
        direct = await tls.get("/health")
    assert "max-age=" in direct.headers["Strict-Transport-Security"]


async def test_authenticated_responses_are_not_cached(client: httpx.AsyncClient) -> None:
    account = await register(client)
    me = await client.get(ME, headers=account.headers)
    assert me.headers["Cache-Control"] == "no-store"
    refused = await client.get(ME, headers={"Authorization": "Bearer garbage"})
    assert refused.headers["Cache-Control"] == "no-store"
    anonymous = await client.get("/health")
    assert "no-store" not in anonymous.headers.get("Cache-Control", "")


async def test_token_responses_are_not_cached(client: httpx.AsyncClient) -> None:
    # Login and refresh answers hold tokens even though the request carried none.
    await register(client, "cache@example.com")
    login = await client.post(
        "/api/v1/auth/login", json={"email": "cache@example.com", "password": PASSWORD}
    )
    assert login.headers["Cache-Control"] == "no-store"
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert refreshed.headers["Cache-Control"] == "no-store"


async def test_cors_allows_only_the_configured_origins(make_app: AppFactory) -> None:
    app = await make_app(BACKEND_CORS_ORIGINS=["https://shop.example.com"])
    async with _client(app) as c:
        preflight = await c.options(
            ME,
            headers={
                "Origin": "https://shop.example.com",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        simple = await c.get("/health", headers={"Origin": "https://shop.example.com"})
        assert simple.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert "X-Request-ID" in simple.headers["access-control-expose-headers"]

        evil_preflight = await c.options(
            ME,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in evil_preflight.headers
        evil = await c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers


async def test_without_cors_origins_no_cors_headers_are_sent(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "https://shop.example.com"})
    assert "access-control-allow-origin" not in response.headers


# --------------------------------------------------------------------------- OpenAPI


async def test_openapi_describes_every_route_with_error_responses(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    error_ref = "#/components/schemas/ErrorResponse"
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary") or operation.get("description"), (method, path)
            if not path.startswith("/api/v1/"):
                continue
            errors = {
                code: response
                for code, response in operation["responses"].items()
                if code.isdigit() and int(code) >= 400
            }
            declared = {
                code
                for code, response in errors.items()
                if response.get("content", {}).get("application/json", {}).get("schema", {})
                == {"$ref": error_ref}
            }
            assert declared, f"{method.upper()} {path} declares no error in the contract's shape"
            # FastAPI's default 422 model ({"detail": [...]}) is not what we send.
            assert "422" not in errors or "422" in declared, (method, path)
    expected = {
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/users", "get"),
        ("/api/v1/users/{user_id}", "patch"),
        ("/", "get"),
        ("/health", "get"),
        ("/health/ready", "get"),
    }
    for path, method in expected:
        assert method in paths.get(path, {}), (path, method)
    login = paths["/api/v1/auth/login"]["post"]
    # One body type (generated clients break on two); the OAuth2 form is described, still taken.
    assert set(login["requestBody"]["content"]) == {"application/json"}
    assert "application/x-www-form-urlencoded" in login["description"]
    user_schema = document["components"]["schemas"]["UserPublic"]["properties"]
    assert not any("password" in name for name in user_schema)


async def test_a_half_written_session_never_leaks(make_app: AppFactory) -> None:
    # SessionDep commits only when the route returns normally.
    app = await make_app()

    async def write_then_fail(session: SessionDep) -> None:
        session.add(User(email="rolled-back@example.com", hashed_password="x"))
        await session.flush()
        from sellerdesk.errors import Conflict

        raise Conflict("nope")

    app.add_api_route("/fail", write_then_fail, methods=["POST"])
    async with _client(app) as c:
        assert_error(await c.post("/fail"), 409, "conflict")
    assert await count_users(app, email="rolled-back@example.com") == 0
    assert isinstance(app.state.sessionmaker(), AsyncSession)


# --------------------------------------------------------------------------- logs


async def test_logs_are_json_lines_bound_to_the_request_id_without_secrets(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await make_app(LOG_LEVEL="INFO", LOG_JSON=True)
    app.add_api_route("/boom", _explode, methods=["POST"])
    async with _client(app) as c:
        await c.get("/health", headers={"X-Request-ID": "log-me-1"})
        await c.post(
            "/api/v1/auth/login",
            json={"email": "who@example.com", "password": "my-secret-password"},
            headers={"X-Request-ID": "log-me-2"},
        )
        await c.post("/boom", headers={"X-Request-ID": "log-me-3"})
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request"]
    health = next(line for line in access if line["request_id"] == "log-me-1")
    assert health["path"] == "/health" and health["status"] == 200
    assert health["method"] == "GET" and isinstance(health["duration_ms"], float)
    assert health["level"] == "info" and health["timestamp"].endswith("Z")
    failed = [line for line in lines if line.get("event") == "login_failed"]
    assert failed and failed[0]["request_id"] == "log-me-2"
    crash = next(line for line in lines if line.get("event") == "unhandled_error")
    assert crash["request_id"] == "log-me-3" and "RuntimeError" in crash["exception"]
    assert "my-secret-password" not in err
