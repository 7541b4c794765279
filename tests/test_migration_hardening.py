"""The hardening migration on a database with data: live keys are counted, and it reverses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from sellerdesk.migrate import alembic_config, upgrade
from tests.conftest import _ROOT_TAG, PG_URL, _worker, is_postgres

REVISION = "0009_hardening"


@pytest.fixture
async def scratch_url(tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of this test's own (PostgreSQL or SQLite, as the run's backend)."""
    if not is_postgres():
        yield f"sqlite+aiosqlite:///{tmp_path}/migration.db"
        return
    name = f"sellerdesk_migration_{_ROOT_TAG}_{_worker()}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def test_existing_live_keys_are_counted_and_the_migration_reverses(
    scratch_url: str,
) -> None:
    config = alembic_config(scratch_url)
    before = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    await asyncio.to_thread(upgrade, scratch_url, before)
    engine = create_async_engine(scratch_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    'INSERT INTO "user" (id, email, hashed_password) '
                    "VALUES (1, 'a@example.com', 'x'), (2, 'b@example.com', 'y')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO api_key (user_id, name, prefix, key_hash, created_at, revoked_at) "
                    "VALUES (1, 'k1', 'sdk_aaaaaaa1', 'h1', CURRENT_TIMESTAMP, NULL), "
                    "(1, 'k2', 'sdk_aaaaaaa2', 'h2', CURRENT_TIMESTAMP, NULL), "
                    "(1, 'k3', 'sdk_aaaaaaa3', 'h3', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        await asyncio.to_thread(upgrade, scratch_url, REVISION)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text('SELECT id, api_key_count, token_version FROM "user" ORDER BY id')
                )
            ).all()
            assert [tuple(row) for row in rows] == [(1, 2, 0), (2, 0, 0)]
            versions = await conn.execute(text("SELECT count(*) FROM refresh_token"))
            assert versions.scalar() == 0
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text('UPDATE "user" SET api_key_count = -1 WHERE id = 2'))
        await asyncio.to_thread(command.downgrade, config, before)
        await asyncio.to_thread(upgrade, scratch_url, REVISION)
    finally:
        await engine.dispose()
