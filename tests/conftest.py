"""Test fixtures: a migrated database (PostgreSQL or SQLite), Redis, the app and its client.

`TEST_BACKEND=postgres` (default) runs on TEST_DATABASE_URL + TEST_REDIS_URL; with CI=true an
unreachable PostgreSQL or Redis fails the run instead of skipping it. `TEST_BACKEND=sqlite` runs
on a SQLite file with the in-process cache and limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sellerdesk.config import Settings
from sellerdesk.main import create_app
from sellerdesk.migrate import upgrade
from sellerdesk.models import Base, CreditPrice
from tests.log_scan import SecretScanner

# Fixtures of a private redis-server and a private PostgreSQL cluster, for tests that stop or
# break them (never the shared services).
pytest_plugins = ["tests.private_redis", "tests.private_postgres"]

BACKEND = os.environ.get("TEST_BACKEND", "postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_ROOT_TAG = hashlib.sha256(str(Path(__file__).resolve().parent).encode()).hexdigest()[:6]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def is_postgres() -> bool:
    return BACKEND == "postgres"


async def _reachable() -> str | None:
    """None when PostgreSQL and Redis answer, else what failed."""
    try:
        engine = create_async_engine(PG_URL)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        await engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {make_url(PG_URL).render_as_string()} is unreachable: {exc}"
    try:
        redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        await redis.ping()
        await redis.aclose()
    except Exception as exc:
        return f"Redis at {REDIS_URL} is unreachable: {exc}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres_only: needs PostgreSQL row locking")
    config.addinivalue_line("markers", "celery: runs a real Celery worker (slow; -m 'not celery')")
    config.addinivalue_line(
        "markers", "reliability: faults, mixed load and invariants (`make test-reliability`)"
    )
    if BACKEND != "postgres":
        return
    problem = asyncio.run(_reachable())
    if problem is None:
        return
    if IN_CI:
        pytest.exit(f"CI=true and {problem}", returncode=3)
    config._sellerdesk_skip = problem  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The reliability suite runs only when asked for (`-m reliability`, `make test-reliability`).
    if "reliability" not in (config.getoption("markexpr") or ""):
        left_out = [item for item in items if item.get_closest_marker("reliability")]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not item.get_closest_marker("reliability")]
    problem = getattr(config, "_sellerdesk_skip", None)
    for item in items:
        if problem:
            item.add_marker(pytest.mark.skip(reason=problem))
        elif BACKEND != "postgres" and item.get_closest_marker("postgres_only"):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (TEST_BACKEND=sqlite)"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"sellerdesk backend: {BACKEND}"


@pytest.fixture(scope="session", autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    """Every log line of the whole run is read; the session fails if one holds a secret."""
    scanner = SecretScanner()
    logging.getLogger().addHandler(scanner)
    yield
    logging.getLogger().removeHandler(scanner)
    assert not scanner.hits, "log lines holding a secret:\n" + "\n".join(scanner.hits[:20])


# --------------------------------------------------------------------------- database


class Database:
    """A migrated test database plus the rows the migrations seeded, restored after each test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url)
        self.snapshot: dict[str, list[dict[str, Any]]] = {}

    @property
    def tables(self) -> list[Any]:
        return [t for t in Base.metadata.sorted_tables]

    async def take_snapshot(self) -> None:
        async with self.engine.connect() as conn:
            for table in self.tables:
                rows = (await conn.execute(select(table))).mappings().all()
                self.snapshot[table.name] = [dict(row) for row in rows]

    async def reset(self) -> None:
        # DELETE children-first is ~50x faster than TRUNCATE on PostgreSQL for a test's few rows
        # (TRUNCATE recreates every table's files); TRUNCATE remains the fallback for FK cycles.
        try:
            async with self.engine.begin() as conn:
                for table in reversed(self.tables):
                    await conn.execute(table.delete())
        except DBAPIError:
            if self.engine.dialect.name != "postgresql":
                raise
            names = ", ".join(f'"{t.name}"' for t in self.tables)
            async with self.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {names} CASCADE"))
        async with self.engine.begin() as conn:
            for table in self.tables:
                rows = self.snapshot.get(table.name)
                if rows:
                    await conn.execute(insert(table), rows)


async def _create_pg_database(suffix: str = "") -> str:
    """A fresh, empty database of this worktree and worker (`suffix` for a second one)."""
    return await recreate_pg_database(f"sellerdesk_test_{_ROOT_TAG}_{_worker()}{suffix}")


async def recreate_pg_database(name: str) -> str:
    """Drop (after ending its sessions) and create database `name`; its URL."""
    base = make_url(PG_URL)
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[Database]:
    if is_postgres():
        url = await _create_pg_database()
    else:
        folder = tempfile.mkdtemp(prefix="sellerdesk-test-")
        url = f"sqlite+aiosqlite:///{folder}/test.db"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    await db.take_snapshot()
    yield db
    await db.engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    return REDIS_URL if is_postgres() else None


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test, so parallel runs and tests never share Redis keys."""
    return f"sdtest:{_ROOT_TAG}:{_worker()}:{os.urandom(4).hex()}"


@pytest.fixture
async def redis(redis_url: str | None, redis_prefix: str) -> AsyncIterator[Redis | None]:
    if redis_url is None:
        yield None
        return
    client = Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def make_settings(
    database_url: str, redis_url: str | None, prefix: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "ENVIRONMENT": "test",
        "SECRET_KEY": "test-secret-key-0123456789abcdef-0123456789abcdef",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "CELERY_BROKER_URL": None,
        "PASSWORD_HASH_MEMORY_KIB": 1024,
        "PASSWORD_HASH_TIME_COST": 1,
        "LOG_LEVEL": "INFO",  # every INFO line is scanned for secrets (`no_secrets_in_logs`)
        "LOG_JSON": True,
        "PAYMENT_PROVIDER": "manual",
        "STRIPE_SECRET_KEY": None,
        "STRIPE_WEBHOOK_SECRET": None,
        "JOBS_ENABLED": False,  # tests call the periodic jobs directly
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


AppFactory = Callable[..., Awaitable[FastAPI]]


@pytest.fixture
async def make_app(
    database: Database, redis: Redis | None, redis_url: str | None, redis_prefix: str
) -> AsyncIterator[AppFactory]:
    """Build an app with setting overrides; every app built is started and later stopped."""
    stack: list[Any] = []

    async def factory(**overrides: Any) -> FastAPI:
        settings = make_settings(database.url, redis_url, redis_prefix, **overrides)
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stack.append(lifespan)
        return app

    yield factory
    for lifespan in reversed(stack):
        await lifespan.__aexit__(None, None, None)
    await database.reset()


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def free_data_calls(database: Database) -> AsyncIterator[None]:
    """Make the paid data routes cost 0 credits for one test (tests about the data, not about
    charging; `test_credits_amazon.py` covers the charge)."""
    async with database.engine.begin() as conn:
        prices = (await conn.execute(select(CreditPrice.endpoint, CreditPrice.credits))).all()
        await conn.execute(update(CreditPrice).values(credits=0))
    yield
    async with database.engine.begin() as conn:
        for endpoint, credits in prices:
            await conn.execute(
                update(CreditPrice).where(CreditPrice.endpoint == endpoint).values(credits=credits)
            )
