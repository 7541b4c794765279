"""Migration 0010_refunds on a database that already has refunds: old rows become settled
`succeeded` refunds, dashboard refunds get their `provider` row, and `sellerdesk check` finds
the payments consistent; it downgrades and upgrades again."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sellerdesk.audit import audit
from sellerdesk.migrate import alembic_config, upgrade
from tests.conftest import PG_URL, is_postgres

BEFORE = "0009_hardening"


@pytest.fixture
async def scratch_url() -> AsyncIterator[str]:
    """An empty database of the test backend, dropped afterwards."""
    if not is_postgres():
        yield f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='sellerdesk-mig-')}/m.db"
        return
    name = f"sellerdesk_migration_{os.getpid()}"
    admin = create_async_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def test_existing_refunds_are_settled_and_dashboard_refunds_get_their_row(
    scratch_url: str,
) -> None:
    await asyncio.to_thread(upgrade, scratch_url, BEFORE)
    engine = create_async_engine(scratch_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("""INSERT INTO "user" (id, email) VALUES (1, 'a@x.io')"""))
            await conn.execute(
                text(
                    "INSERT INTO payment (id, purpose, provider, user_id, amount, currency,"
                    " status, refunded_amount, created_at, updated_at) VALUES"
                    " (1, 'credit_purchase:1', 'stripe', 1, 30.00, 'usd', 'succeeded', 20.00,"
                    "  CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),"
                    " (2, 'credit_purchase:2', 'stripe', 1, 9.00, 'usd', 'succeeded', 9.00,"
                    "  CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            # The old code stored Stripe's status as it came (`pending` for slow methods), and
            # counted every row it kept as refunded; payment 1 had 9.00 refunded in Stripe's
            # dashboard on top.
            await conn.execute(
                text(
                    "INSERT INTO refund (payment_id, amount, provider_refund_id, status,"
                    " created_at) VALUES"
                    " (1, 5.00, 're_1', 'succeeded', CURRENT_TIMESTAMP),"
                    " (1, 6.00, 're_2', 'pending', CURRENT_TIMESTAMP),"
                    " (2, 9.00, 're_3', 'succeeded', CURRENT_TIMESTAMP)"
                )
            )

        await asyncio.to_thread(upgrade, scratch_url)

        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT payment_id, amount, status, reason, settled_at IS NOT NULL"
                        " FROM refund ORDER BY payment_id, id"
                    )
                )
            ).all()
            reserved = (
                await conn.execute(text("SELECT refund_reserved FROM payment ORDER BY id"))
            ).scalars()
            assert [Decimal(str(r)) for r in reserved] == [Decimal("0"), Decimal("0")]
        assert [(p, Decimal(str(a)), s, r, bool(t)) for p, a, s, r, t in rows] == [
            (1, Decimal("5.00"), "succeeded", None, True),
            (1, Decimal("6.00"), "succeeded", None, True),
            (1, Decimal("9.00"), "succeeded", "provider", True),
            (2, Decimal("9.00"), "succeeded", None, True),
        ]
        report = await audit(engine, sweep_after_seconds=300, only=["payment_refunds"])
        assert [v.line() for v in report.violations] == []

        await asyncio.to_thread(command.downgrade, alembic_config(scratch_url), BEFORE)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM refund"))).scalar() == 3
        await asyncio.to_thread(upgrade, scratch_url)
    finally:
        await engine.dispose()
