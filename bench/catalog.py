"""Catalog figures against a real uvicorn on 127.0.0.1.

    PYTHONPATH=src python bench/catalog.py                # PostgreSQL (+ Redis when reachable)
    PYTHONPATH=src python bench/catalog.py --sqlite       # the embedded default

It builds a fresh database (migrations + `sellerdesk seed`), starts one uvicorn worker, then
measures: GET /health (the bare baseline), GET /products?q=... served from the cache and
built from the database (distinct keys), and a 10,000-row CSV import (time, and the server
process's peak RSS during the import relative to its RSS before it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "sellerdesk_bench_catalog"
HEADER = "sku,name,description,price,stock_quantity,category_slug\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fresh_postgres(name: str = PG_BENCH_DB) -> str:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def cli(env: dict[str, str], *args: str) -> None:
    code = "from sellerdesk.cli import app; app()"
    subprocess.run(  # noqa: S603
        [sys.executable, "-c", code, *args], env=env, check=True, capture_output=True
    )


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def latencies(client: httpx.AsyncClient, paths: list[str]) -> list[float]:
    times = []
    for path in paths:
        started = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return times


def summary(name: str, times: list[float]) -> str:
    times = sorted(times)
    p95 = times[int(len(times) * 0.95) - 1]
    return f"{name:<44} p50 {statistics.median(times):7.2f} ms   p95 {p95:7.2f} ms   n={len(times)}"


async def measure(base: str, pid: int, rows: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": "admin@example.com", "password": "admin-password"}
        )
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        total = (await client.get("/api/v1/products?page_size=1")).json()["total"]
        print(f"demo catalog: {total} products")
        matches = (await client.get("/api/v1/products?q=mug")).json()["total"]
        print(f"q=mug matches {matches} products")
        await latencies(client, ["/health"] * 50)  # warm up
        print(summary("GET /health (baseline)", await latencies(client, ["/health"] * 300)))
        hit = "/api/v1/products?q=mug"
        await client.get(hit)
        print(summary("GET /products?q=mug (cache hit)", await latencies(client, [hit] * 300)))
        misses = [f"/api/v1/products?q=mug&min_price=0.{i:02d}" for i in range(100)]
        misses += [f"/api/v1/products?q=lamp&min_price=0.{i:02d}" for i in range(100)]
        print(summary("GET /products?q=... (cache miss, from DB)", await latencies(client, misses)))
        sorted_misses = [
            f"/api/v1/products?q=pro&sort=price&min_price=0.{i:02d}" for i in range(100)
        ]
        print(
            summary("GET /products?q=pro&sort=price (miss)", await latencies(client, sorted_misses))
        )

        body = HEADER + "".join(
            f"BENCH-{n:06d},Bench item {n},Imported row {n},{n % 900 + 1}.{n % 100:02d},"
            f"{n % 50},mugs\n"
            for n in range(rows)
        )
        before = rss_kib(pid, "VmRSS")
        reset_peak(pid)
        started = time.perf_counter()
        response = await client.post(
            "/api/v1/products/import",
            files={"file": ("bench.csv", body.encode(), "text/csv")},
            headers=admin,
        )
        elapsed = time.perf_counter() - started
        peak = rss_kib(pid, "VmHWM")
        report = response.json()
        assert response.status_code == 200 and not report["errors"], response.text[:500]
        print(
            f"import of {rows} rows ({len(body) / 1e6:.2f} MB): {elapsed:.2f} s, "
            f"created {report['created']}, updated {report['updated']}; server RSS "
            f"{before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB "
            f"(+{(peak - before) / 1024:.1f} MiB)"
        )
        started = time.perf_counter()
        again = await client.post(
            "/api/v1/products/import",
            files={"file": ("bench.csv", body.encode(), "text/csv")},
            headers=admin,
        )
        print(
            f"re-import of the same {rows} rows (all updates): "
            f"{time.perf_counter() - started:.2f} s, {again.json()['updated']} updated"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="use SQLite and the memory cache")
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="sellerdesk-bench-")
    if args.sqlite:
        url, redis = f"sqlite+aiosqlite:///{workdir}/bench.db", ""
    else:
        url, redis = asyncio.run(fresh_postgres()), "redis://127.0.0.1:6379/0"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "DATABASE_URL": url,
        "REDIS_URL": redis,
        "REDIS_KEY_PREFIX": f"bench-catalog-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "development",
        "SELLERDESK_ROOT": str(ROOT),
    }
    if not redis:
        env.pop("REDIS_URL")
    cli(env, "migrate")
    started = time.perf_counter()
    cli(env, "seed")
    print(f"backend: {'sqlite' if args.sqlite else 'postgresql + redis'}")
    print(f"seed (demo accounts + catalog): {time.perf_counter() - started:.2f} s")
    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", "sellerdesk.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        env=env, cwd=workdir,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        asyncio.run(measure(base, server.pid, args.rows))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
