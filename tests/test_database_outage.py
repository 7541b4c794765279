"""While the database is unreachable, routes answer 503 `service_unavailable` with
`Retry-After` (never a 500 traceback); `/health` stays 200, `/health/ready` 503; once the
database is back the same process answers normally again.

The PostgreSQL cases stop and start a private cluster (`tests/private_postgres.py`), never the
shared server.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from sellerdesk.db import PING_AFTER_IDLE_SECONDS, SessionDep
from sellerdesk.errors import is_database_outage
from tests.conftest import AppFactory
from tests.factories import register
from tests.private_postgres import PrivatePostgres, app_on


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "service_unavailable"
    assert body["message"]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-Request-ID"]


class Outage:
    """An app on a database of the private cluster, its client, and the cluster."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, cluster: PrivatePostgres):
        self.app, self.client, self.cluster = app, client, cluster

    async def stop_database(self) -> None:
        await asyncio.to_thread(self.cluster.stop)

    async def start_database(self) -> None:
        await asyncio.to_thread(self.cluster.start)


outage_router = APIRouter(prefix="/api/v1/test-outage")


@outage_router.post("/lost-mid-request")
async def lost_mid_request(request: Request, session: SessionDep) -> dict[str, Any]:
    """Reads, loses the database, then reads again (tests only)."""
    await session.execute(text("SELECT 1"))
    await request.app.state.outage.stop_database()
    await session.execute(text("SELECT 2"))
    return {}


@outage_router.post("/bad-statement")
async def bad_statement(session: SessionDep) -> dict[str, Any]:
    """A statement the database refuses: a bug, not an outage (tests only)."""
    await session.execute(text("SELECT * FROM no_such_table"))
    return {}


@outage_router.post("/lost-before-commit")
async def lost_before_commit(request: Request, session: SessionDep) -> dict[str, Any]:
    """Writes, then loses the database before the request scope commits (tests only)."""
    await session.execute(text("CREATE TEMPORARY TABLE scratch (id int)"))
    await request.app.state.outage.stop_database()
    return {}


@pytest.fixture
async def outage(private_postgres: PrivatePostgres) -> AsyncIterator[Outage]:
    async with app_on(private_postgres, "outage") as app:
        app.include_router(outage_router)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            app.state.outage = Outage(app, client, private_postgres)
            yield app.state.outage


@pytest.mark.postgres_only
async def test_database_stopped_answers_503_and_the_service_recovers_without_restart(
    outage: Outage,
) -> None:
    client = outage.client
    user = await register(client)
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status_code == 200

    await outage.stop_database()
    assert_unavailable(await client.get("/api/v1/users/me", headers=user.headers))
    assert_unavailable(await client.get("/api/v1/products"))
    assert_unavailable(await client.get("/api/v1/credits", headers=user.headers))
    assert_unavailable(
        await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
    )
    assert (await client.get("/health")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unavailable"

    await outage.start_database()
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200
    again = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": user.password}
    )
    assert again.status_code == 200, again.text


@pytest.mark.postgres_only
async def test_a_database_restarted_while_the_process_was_idle_is_reconnected_silently(
    outage: Outage,
) -> None:
    # No request sees the outage: the pooled connections are dead when the next one arrives,
    # and the checkout ping of an idle connection replaces them before the request uses them.
    client = outage.client
    user = await register(client)
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status_code == 200
    await outage.stop_database()
    await outage.start_database()
    await asyncio.sleep(PING_AFTER_IDLE_SECONDS)
    for _ in range(3):
        assert (await client.get("/api/v1/users/me", headers=user.headers)).status_code == 200


@pytest.mark.postgres_only
async def test_database_lost_in_the_middle_of_a_request_answers_503(outage: Outage) -> None:
    assert_unavailable(await outage.client.post("/api/v1/test-outage/lost-mid-request"))
    await outage.start_database()
    assert (await outage.client.get("/api/v1/products")).status_code == 200


@pytest.mark.postgres_only
async def test_database_lost_before_the_commit_answers_503(outage: Outage) -> None:
    assert_unavailable(await outage.client.post("/api/v1/test-outage/lost-before-commit"))
    await outage.start_database()
    assert (await outage.client.get("/api/v1/products")).status_code == 200


async def test_sqlite_file_that_cannot_be_opened_answers_503(make_app: Any) -> None:
    app = await make_app(DATABASE_URL="sqlite+aiosqlite:////nonexistent-dir/sellerdesk/x.db")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert_unavailable(await client.get("/api/v1/products"))
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 503


SQLITE = sqlite3.OperationalError


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True),
        (OSError(errno.EHOSTUNREACH, "no route to host"), True),
        (TimeoutError(), True),
        (sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"), True),
        (sa_exc.DisconnectionError("gone"), True),
        (
            sa_exc.OperationalError(
                "SELECT 1", {}, sqlite3.OperationalError("unable to open database file")
            ),
            True,
        ),
        (
            sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
            True,
        ),
        (
            sa_exc.OperationalError("SELECT x", {}, sqlite3.OperationalError("no such table: x")),
            False,
        ),
        (sa_exc.DBAPIError("SELECT 1", {}, asyncpg.ConnectionDoesNotExistError("closed")), True),
        (sa_exc.DBAPIError("SELECT 1", {}, asyncpg.CannotConnectNowError("starting up")), True),
        (sa_exc.DBAPIError("SELECT 1", {}, asyncpg.AdminShutdownError("terminating")), True),
        (sa_exc.DBAPIError("SELECT 1", {}, asyncpg.DivisionByZeroError("1/0")), False),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception("another operation")), False),
        (sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (sa_exc.ProgrammingError("SELEC", {}, Exception("syntax error")), False),
        (FileNotFoundError(errno.ENOENT, "missing"), False),
        (ValueError("bad"), False),
    ],
)
def test_which_errors_count_as_a_database_outage(error: BaseException, outage: bool) -> None:
    assert is_database_outage(error) is outage


async def test_every_api_route_declares_503_in_the_error_shape(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    missing = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        if path.startswith("/api/v1/")
        for method, operation in operations.items()
        if operation["responses"].get("503", {}).get("content", {}).get("application/json", {})
        != {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
    ]
    assert missing == []


async def test_a_statement_the_database_refuses_is_still_a_500(make_app: AppFactory) -> None:
    app = await make_app()
    app.include_router(outage_router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/api/v1/test-outage/bad-statement")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "Retry-After" not in response.headers
