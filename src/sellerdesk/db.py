"""Engine, session factory and `SessionDep`, the request's unit of work."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.dml import Insert

from sellerdesk.config import Settings

log = structlog.get_logger(__name__)

AfterCommit = Callable[[], Awaitable[None]]


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and writer serialisation.

    Bound parameters (password hashes, token hashes) never appear in SQLAlchemy's log lines or
    in the text of its exceptions, which end up in tracebacks: `hide_parameters=True`.
    """
    url = url or settings.DATABASE_URL
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        connect_args={
            **_asyncpg_args(settings.DATABASE_STATEMENT_CACHE_SIZE),
            **_loopback_without_tls(url),
            "timeout": settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
            "command_timeout": settings.DATABASE_COMMAND_TIMEOUT_SECONDS,
        },
        hide_parameters=True,
    )
    _ping_idle_connections(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Pre-ping only a connection that sat in the pool for a while.

    `pool_pre_ping=True` costs two round trips (BEGIN; ROLLBACK on asyncpg) on every checkout.
    A connection handed back moments ago is alive; one that was idle may have been cut (server
    restart, failover, an idle timeout), so it is pinged and, if dead, replaced before the
    request uses it. A disconnect seen by any statement also invalidates the whole pool
    (SQLAlchemy's own handling), so connections opened before an outage are never reused.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another one.
            raise sa_exc.DisconnectionError() from exc


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _loopback_without_tls(url: str) -> dict[str, Any]:
    """No TLS attempt to a database on this machine unless the URL asks for one (`ssl=`).

    asyncpg's default (`prefer`, like libpq's) builds a TLS context with the system's CA
    bundle and asks the server for TLS on every new connection: ~0.9 ms of CPU per connection
    on loopback (~2.0 → ~1.1 ms), where TLS protects nothing. A remote host keeps the default.
    """
    parsed = make_url(url)
    host = parsed.host or ""
    on_this_machine = host in LOOPBACK_HOSTS or host.startswith("/")
    if on_this_machine and "ssl" not in parsed.query and "host" not in parsed.query:
        return {"ssl": False}
    return {}


def _asyncpg_args(statement_cache_size: int) -> dict[str, Any]:
    """0 = PgBouncer in transaction mode: a prepared statement lives on one server connection
    and the next transaction may get another, so cache none and never reuse a name."""
    if statement_cache_size:
        return {"prepared_statement_cache_size": statement_cache_size}
    return {
        "prepared_statement_cache_size": 0,
        "statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4().hex}__",
    }


def _configure_sqlite(engine: AsyncEngine) -> None:
    # SQLite cannot lock rows; BEGIN IMMEDIATE makes every transaction take the write lock up
    # front, so two writers queue instead of failing half-way ("database is locked").
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def on_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the request's transaction has committed (cache purges, jobs)."""
    session.info.setdefault("after_commit", []).append(callback)


async def run_after_commit(session: AsyncSession) -> None:
    """Run and clear the callbacks queued with `on_commit`; a failing one is logged, not raised."""
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            log.exception("after_commit_failed", callback=getattr(callback, "__name__", "?"))


async def commit(session: AsyncSession) -> None:
    """Commit and then run the after-commit callbacks."""
    await session.commit()
    await run_after_commit(session)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session: commits when the route returns, rolls back when it raises."""
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
            await commit(session)
        except BaseException:
            await session.rollback()
            session.info.pop("after_commit", None)
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def insert_for(session: AsyncSession | Connection, table: Any) -> Insert:
    """A dialect-aware INSERT that supports `on_conflict_do_nothing` on SQLite and PostgreSQL."""
    bind = session.get_bind() if isinstance(session, AsyncSession) else session
    if bind.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)
