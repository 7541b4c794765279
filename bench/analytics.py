"""Server time of the analytics routes and the dashboard pages on a year of data.

    PYTHONPATH=src python bench/analytics.py              # PostgreSQL (127.0.0.1:5432)
    PYTHONPATH=src python bench/analytics.py --sqlite     # the embedded default

It builds a fresh, migrated database and fills it in bulk with 365 days of a busy store: 300
orders a day (~110,000 orders, ~220,000 lines over 200 products; most paid the same day, some
refunded days later), 300 paid calls a day for one API customer (their ledger charges and the
daily usage rows), 20 credit purchases a day. Then it times each route in-process (the ASGI
app, its middleware and the database included; no network) and prints p50 and p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from sellerdesk import admin_stats
from sellerdesk.auth import sessions
from sellerdesk.auth.tokens import create_access_token
from sellerdesk.config import Settings
from sellerdesk.main import create_app
from sellerdesk.migrate import upgrade
from sellerdesk.models import (
    CreditAccount,
    CreditLedger,
    CreditUsage,
    Order,
    OrderItem,
    Payment,
    Product,
    Refund,
    User,
)

PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "sellerdesk_bench_analytics"
DAYS, ORDERS_PER_DAY, CALLS_PER_DAY, PURCHASES_PER_DAY, PRODUCTS = 365, 300, 300, 20, 200
CHUNK = 5_000
ADDRESS = {"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1", "country": "US"}


async def fresh_postgres() -> str:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{PG_BENCH_DB}"'))
    await admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}"


async def bulk(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        await conn.execute(insert(table), rows[start : start + CHUNK])


def at(day: datetime, rng: random.Random) -> datetime:
    return day + timedelta(seconds=rng.randrange(86_400))


async def fill(conn: AsyncConnection) -> None:
    rng = random.Random(16)
    today = datetime.combine(datetime.now(UTC).date(), day_time.min, tzinfo=UTC)
    first = today - timedelta(days=DAYS - 1)
    users = [
        {"id": 1, "email": "admin@example.com", "is_superuser": True},
        {"id": 2, "email": "customer@example.com", "is_superuser": False},
        *(
            {"id": n, "email": f"buyer{n}@example.com", "is_superuser": False}
            for n in range(3, 503)
        ),
    ]
    await bulk(conn, User, users)
    prices = {pid: Decimal(rng.randrange(199, 9999)) / 100 for pid in range(1, PRODUCTS + 1)}
    await bulk(
        conn,
        Product,
        [
            {
                "id": pid,
                "name": f"Product {pid}",
                "price": price,
                "currency": "usd",
                "stock_quantity": 1_000_000,
                "low_stock_threshold": 5,
                "sku": f"B-{pid}",
                "images": [],
                "is_active": True,
            }
            for pid, price in prices.items()
        ],
    )
    orders: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    refunds: list[dict[str, Any]] = []
    order_id = item_id = payment_id = 0
    for n in range(DAYS):
        day = first + timedelta(days=n)
        for _ in range(ORDERS_PER_DAY):
            order_id += 1
            placed = at(day, rng)
            lines = rng.sample(range(1, PRODUCTS + 1), rng.randint(1, 3))
            total = Decimal(0)
            for pid in lines:
                item_id += 1
                quantity = rng.randint(1, 3)
                total += prices[pid] * quantity
                items.append(
                    {
                        "id": item_id,
                        "order_id": order_id,
                        "product_id": pid,
                        "name": f"Product {pid}",
                        "sku": f"B-{pid}",
                        "quantity": quantity,
                        "unit_price": prices[pid],
                        "line_total": prices[pid] * quantity,
                    }
                )
            paid = rng.random() < 0.85
            # Unpaid orders of past days have expired (the expiry job cancels them).
            expired = placed.date() < today.date()
            unpaid = ("cancelled", "failed") if expired else ("pending", "pending")
            status, paid_status = (
                (rng.choice(["paid", "shipped", "delivered"]), "succeeded") if paid else unpaid
            )
            orders.append(
                {
                    "id": order_id,
                    "user_id": rng.randrange(3, 503),
                    "status": status,
                    "payment_status": paid_status,
                    "total_amount": total,
                    "currency": "usd",
                    "shipping_address": ADDRESS,
                    "created_at": placed,
                    "updated_at": placed,
                }
            )
            if paid:
                payment_id += 1
                payments.append(
                    {
                        "id": payment_id,
                        "purpose": f"order:{order_id}",
                        "provider": "manual",
                        "order_id": order_id,
                        "user_id": orders[-1]["user_id"],
                        "amount": total,
                        "currency": "usd",
                        "status": "succeeded",
                        "refunded_amount": Decimal(0),
                        "captured_at": placed,
                        "created_at": placed,
                        "updated_at": placed,
                    }
                )
                if rng.random() < 0.03:
                    later = min(placed + timedelta(days=rng.randint(0, 5)), today)
                    refunds.append(
                        {
                            "payment_id": payment_id,
                            "amount": total,
                            "status": "succeeded",
                            "created_at": later,
                            "settled_at": later,
                        }
                    )
    await bulk(conn, Order, orders)
    await bulk(conn, OrderItem, items)
    ledger: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []
    balance = 10_000_000
    for n in range(DAYS):
        day = first + timedelta(days=n)
        for p in range(PURCHASES_PER_DAY):
            payment_id += 1
            when = at(day, rng)
            payments.append(
                {
                    "id": payment_id,
                    "purpose": f"credit_purchase:{n}:{p}",
                    "provider": "manual",
                    "order_id": None,
                    "user_id": 2,
                    "amount": Decimal("49.00"),
                    "currency": "usd",
                    "status": "succeeded",
                    "refunded_amount": Decimal(0),
                    "captured_at": when,
                    "created_at": when,
                    "updated_at": when,
                }
            )
            balance += 5000
            ledger.append(
                {
                    "user_id": 2,
                    "amount": 5000,
                    "balance_after": balance,
                    "kind": "purchase",
                    "reference": "purchase",
                    "created_at": when,
                }
            )
        calls = {"asin_lookup": 0, "fnsku_conversion": 0}
        for _ in range(CALLS_PER_DAY):
            endpoint = rng.choice(list(calls))
            calls[endpoint] += 1
            balance -= 1
            ledger.append(
                {
                    "user_id": 2,
                    "amount": -1,
                    "balance_after": balance,
                    "kind": "charge",
                    "reference": "code",
                    "endpoint": endpoint,
                    "created_at": at(day, rng),
                }
            )
        usage += [
            {"user_id": 2, "day": day.date(), "endpoint": e, "calls": c, "credits": c}
            for e, c in calls.items()
        ]
    await bulk(conn, Payment, payments)
    await bulk(conn, Refund, refunds)
    ledger.sort(key=lambda row: row["created_at"])
    running = 10_000_000
    for row in ledger:
        running += row["amount"]
        row["balance_after"] = running
        row.setdefault("endpoint", None)
    await conn.execute(
        insert(CreditAccount).values(
            user_id=2, balance=running, lifetime_purchased=0, lifetime_spent=0, updated_at=today
        )
    )
    await bulk(conn, CreditLedger, ledger)
    await bulk(conn, CreditUsage, usage)
    print(
        f"seeded {len(orders)} orders, {len(items)} lines, {len(payments)} payments, "
        f"{len(refunds)} refunds, {len(ledger)} ledger entries, {len(usage)} usage rows"
    )


async def timed(
    client: httpx.AsyncClient, path: str, runs: int, **kwargs: Any
) -> tuple[float, float]:
    for _ in range(3):
        warm = await client.get(path, **kwargs)
        assert warm.status_code == 200, (path, warm.status_code, warm.text[:300])
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = await client.get(path, **kwargs)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def main(sqlite: bool, runs: int) -> None:
    if sqlite:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='sellerdesk-bench-')}/bench.db"
    else:
        url = await fresh_postgres()
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await fill(conn)
        if not sqlite:
            await conn.execute(text("ANALYZE"))
    await engine.dispose()
    if not sqlite:  # what autovacuum does soon after a bulk load (index-only scans need it)
        vacuum = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with vacuum.connect() as conn:
            await conn.execute(text("VACUUM ANALYZE"))
        await vacuum.dispose()

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        ENVIRONMENT="test",
        SECRET_KEY="bench-secret-key-0123456789abcdef-0123456789",  # noqa: S106
        DATABASE_URL=url,
        LOG_LEVEL="WARNING",
        JOBS_ENABLED=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as session:
            admin_cookie, _ = await sessions.start(
                session, await session.get(User, 1), timedelta(hours=1)
            )
            customer_cookie, _ = await sessions.start(
                session, await session.get(User, 2), timedelta(hours=1)
            )
            await session.commit()
        admin = {"Authorization": f"Bearer {create_access_token(settings, 1)}"}
        customer = {"Authorization": f"Bearer {create_access_token(settings, 2)}"}
        year = {"from": (datetime.now(UTC).date() - timedelta(days=DAYS - 1)).isoformat()}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            cases: list[tuple[str, str, dict[str, Any]]] = [
                ("GET /api/v1/admin/stats (30 days)", "/api/v1/admin/stats", {"headers": admin}),
                (
                    "GET /api/v1/admin/stats (365 days)",
                    "/api/v1/admin/stats",
                    {"headers": admin, "params": year},
                ),
                (
                    "GET /api/v1/credits/usage (30 days)",
                    "/api/v1/credits/usage",
                    {"headers": customer},
                ),
                (
                    "GET /api/v1/credits/usage (365 days)",
                    "/api/v1/credits/usage",
                    {"headers": customer, "params": year},
                ),
            ]
            pages_admin = [
                "/dashboard/admin",
                "/dashboard/admin/orders",
                "/dashboard/admin/orders/1",
                "/dashboard/admin/products",
                "/dashboard/admin/products/1",
                "/dashboard/admin/low-stock",
                "/dashboard/admin/users",
                "/dashboard/admin/ledger",
                "/dashboard/admin/events",
            ]
            pages_customer = [
                "/dashboard/usage",
                "/dashboard/transactions",
                "/dashboard/keys",
                "/dashboard/credits",
                "/dashboard/try",
                "/dashboard/inventory-report",
            ]
            cases += [
                (f"page {p}", p, {"cookies": {"sellerdesk_session": admin_cookie}})
                for p in pages_admin
            ]
            cases += [
                (f"page {p}", p, {"cookies": {"sellerdesk_session": customer_cookie}})
                for p in pages_customer
            ]
            backend = "SQLite" if sqlite else "PostgreSQL"
            print(f"\n{backend}, {runs} runs each, in-process (ms):")
            print(f"{'route':52} {'p50':>8} {'p99':>8}")
            # Every day live, as before the `roll_up_stats` job has run ...
            p50, p99 = await timed(client, "/api/v1/admin/stats", 10, headers=admin, params=year)
            print(f"{'GET /api/v1/admin/stats (365 days, all live)':52} {p50:8.2f} {p99:8.2f}")
            # ... then the job once (a year at once, as on its first run), the rest as served.
            started = time.perf_counter()
            rolled = await admin_stats.roll_up_stats(app.state.sessionmaker, settings.CURRENCY)
            took = (time.perf_counter() - started) * 1000
            print(f"{f'roll_up_stats: {rolled} days rolled up (once)':52} {took:8.2f}")
            for name, path, kwargs in cases:
                client.cookies.clear()
                p50, p99 = await timed(client, path, runs, **kwargs)
                print(f"{name:52} {p50:8.2f} {p99:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true", help="the embedded default")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.sqlite, args.runs))
