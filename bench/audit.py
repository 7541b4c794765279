"""How long `sellerdesk check` takes on a database of ~100,000 rows per large table.

    PYTHONPATH=src python bench/audit.py              # PostgreSQL (127.0.0.1:5432)
    PYTHONPATH=src python bench/audit.py --sqlite     # the embedded default

It builds a fresh, migrated database and fills it with consistent data written directly in
bulk: 10,000 products with 10 stock movements each (100,000), 20,000 orders with 50,000 lines
(a quarter of them cancelled, their stock returned), 1,000 credit accounts with 100 ledger
entries each (100,000; a fifth of them paid calls with their charge rows), 5,000 payments with
refunds. Then it runs the audit three times and reports each run and the violations found
(expected: none).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from sellerdesk.audit import audit
from sellerdesk.migrate import upgrade
from sellerdesk.models import (
    CreditAccount,
    CreditCharge,
    CreditLedger,
    Order,
    OrderItem,
    Payment,
    Product,
    Refund,
    StockMovement,
    User,
)
from sellerdesk.models.base import utcnow

PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "sellerdesk_bench_audit"
PRODUCTS, MOVES_PER_PRODUCT = 10_000, 10
ORDERS, USERS, ENTRIES_PER_USER = 20_000, 1_000, 100
PAYMENTS = 5_000
CHUNK = 5_000


async def fresh_postgres() -> str:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{PG_BENCH_DB}"'))
    await admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}"


async def bulk(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    # executemany takes its columns from the first row: every row carries every key.
    assert all(row.keys() == rows[0].keys() for row in rows), table
    for start in range(0, len(rows), CHUNK):
        await conn.execute(insert(table), rows[start : start + CHUNK])


async def fill(conn: AsyncConnection) -> dict[str, int]:
    rng = random.Random(7)
    now = utcnow()
    users = [
        {"id": n, "email": f"bench{n}@example.com", "hashed_password": None}
        for n in range(1, USERS + 1)
    ]
    await bulk(conn, User, users)

    stock: dict[int, int] = {}
    movements: list[dict[str, Any]] = []
    for pid in range(1, PRODUCTS + 1):
        level = 0
        for step in range(MOVES_PER_PRODUCT):
            delta = rng.randint(50, 100) if step == 0 else rng.randint(-5, 10)
            level += delta
            movements.append(
                {
                    "product_id": pid,
                    "delta": delta,
                    "stock_after": level,
                    "reason": "adjustment",
                    "order_id": None,
                }
            )
        stock[pid] = level

    orders: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for oid in range(1, ORDERS + 1):
        cancelled = oid % 4 == 0
        total = Decimal("0.00")
        for line in range(1 + oid % 4 if oid % 4 else 2):
            pid = rng.randint(1, PRODUCTS)
            quantity, price = rng.randint(1, 3), Decimal(rng.randint(100, 9999)) / 100
            total += price * quantity
            items.append(
                {
                    "order_id": oid,
                    "product_id": pid,
                    "name": f"P{pid}",
                    "sku": f"S{pid}-{line}",
                    "quantity": quantity,
                    "unit_price": price,
                    "line_total": price * quantity,
                }
            )
            stock[pid] += 10  # restocked, so the order never takes it below 0
            movements.append(
                {
                    "product_id": pid,
                    "delta": 10,
                    "stock_after": 0,
                    "reason": "import",
                    "order_id": None,
                }
            )
            stock[pid] -= quantity
            movements.append(
                {
                    "product_id": pid,
                    "delta": -quantity,
                    "stock_after": 0,
                    "reason": "order",
                    "order_id": oid,
                }
            )
            if cancelled:
                stock[pid] += quantity
                movements.append(
                    {
                        "product_id": pid,
                        "delta": quantity,
                        "stock_after": 0,
                        "reason": "cancel",
                        "order_id": oid,
                    }
                )
        orders.append(
            {
                "id": oid,
                "user_id": 1 + oid % USERS,
                "status": "cancelled" if cancelled else "paid",
                "payment_status": "succeeded",
                "total_amount": total,
                "currency": "usd",
                "shipping_address": {"name": "x"},
            }
        )
    products = [
        {
            "id": pid,
            "name": f"Product {pid}",
            "price": Decimal("9.99"),
            "currency": "usd",
            "stock_quantity": level,
            "low_stock_threshold": 5,
            "sku": f"BENCH-{pid}",
            "images": [],
        }
        for pid, level in stock.items()
    ]
    await bulk(conn, Product, products)
    await bulk(conn, Order, orders)
    await bulk(conn, OrderItem, items)
    await bulk(conn, StockMovement, movements)

    ledger: list[dict[str, Any]] = []
    charges: list[dict[str, Any]] = []
    accounts: list[dict[str, Any]] = []
    entry_id = 0
    for uid in range(1, USERS + 1):
        balance = 0
        for n in range(ENTRIES_PER_USER):
            entry_id += 1
            if n == 0:
                amount, kind, key = 1000, "grant", f"grant:{uid}"
            else:
                amount, kind, key = -1, "charge", f"charge:{entry_id}"
            balance += amount
            ledger.append(
                {
                    "id": entry_id,
                    "user_id": uid,
                    "amount": amount,
                    "balance_after": balance,
                    "kind": kind,
                    "idempotency_key": key,
                    "created_at": now,
                }
            )
            if kind == "charge" and n % 5 == 0:
                charges.append(
                    {
                        "user_id": uid,
                        "entry_id": entry_id,
                        "endpoint": "asin_lookup",
                        "codes": [f"US:B0{entry_id:08d}"],
                        "credits": 1,
                        "outcome": "served",
                        "created_at": now - timedelta(minutes=1),
                        "settled_at": now,
                    }
                )
        accounts.append(
            {
                "user_id": uid,
                "balance": balance,
                "lifetime_purchased": 0,
                "lifetime_spent": ENTRIES_PER_USER - 1,
                "updated_at": now,
            }
        )
    await bulk(conn, CreditAccount, accounts)
    await bulk(conn, CreditLedger, ledger)
    await bulk(conn, CreditCharge, charges)

    payments = [
        {
            "id": n,
            "purpose": f"order:{n}",
            "provider": "manual",
            "order_id": n,
            "user_id": 1 + n % USERS,
            "amount": Decimal("100.00"),
            "currency": "usd",
            "status": "succeeded",
            "refunded_amount": Decimal("30.00") if n % 2 else Decimal("0.00"),
        }
        for n in range(1, PAYMENTS + 1)
    ]
    refunds = [
        {
            "payment_id": n,
            "amount": Decimal("30.00"),
            "status": "succeeded",
            "provider_key": f"refund:{n}",
            "settled_at": utcnow(),
        }
        for n in range(1, PAYMENTS + 1, 2)
    ]
    await bulk(conn, Payment, payments)
    await bulk(conn, Refund, refunds)
    return {
        "products": len(products),
        "stock_movements": len(movements),
        "orders": len(orders),
        "order_items": len(items),
        "credit_ledger": len(ledger),
        "credit_charge": len(charges),
        "payments": len(payments),
    }


async def main(sqlite: bool) -> None:
    if sqlite:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='sellerdesk-bench-')}/audit.db"
    else:
        url = await fresh_postgres()
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    started = time.perf_counter()
    async with engine.begin() as conn:
        counts = await fill(conn)
    if not sqlite:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    print(f"filled in {time.perf_counter() - started:.1f} s: {counts}")
    for run in range(1, 4):
        started = time.perf_counter()
        report = await audit(engine, sweep_after_seconds=300)
        elapsed = time.perf_counter() - started
        print(f"audit run {run}: {elapsed:.2f} s, {len(report.violations)} violations")
        for violation in report.violations[:5]:
            print("  ", violation.line())
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true", help="run on SQLite instead")
    asyncio.run(main(parser.parse_args().sqlite))
