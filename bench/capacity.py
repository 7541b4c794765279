"""Capacity figures for docs/scaling.md: requests per second of ONE API process, by kind of
request, and how many database connections it holds under load.

    PYTHONPATH=src python bench/capacity.py [--seconds 10] [--connections 32]

Needs PostgreSQL and Redis on 127.0.0.1 and `wrk` (Debian package). It migrates and seeds a
fresh database, starts `sellerdesk serve` (one uvicorn process), then runs wrk against:
GET /health (the bare baseline), a cached product, a cached product page, GET /users/me (token
check + one user read), a charged paid lookup (rate-limit round trip + credit charge + ledger
row), and a login (argon2id at the default cost). While each scenario runs it samples
PostgreSQL's pg_stat_activity for the bench database's connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from catalog import cli, free_port, fresh_postgres  # noqa: E402

BENCH_DB = "sellerdesk_bench_capacity"

POST_LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{headers}
"""

# Each request from the next payer: charges of different users do not queue on one row.
ROTATING_LUA = """
local tokens = {{{tokens}}}
local n = 0
request = function()
  n = n + 1
  local headers = {{}}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = tokens[(n % #tokens) + 1]
  return wrk.format("POST", nil, headers, '{body}')
end
"""
PAYERS = 32


def payer_token(base: str, admin: dict[str, str], n: int) -> str:
    """A user with credits, logged in: its access token."""
    user = {"email": f"payer{n}@bench.example.com", "password": "bench-password-123"}
    created = httpx.post(f"{base}/api/v1/auth/register", json=user, timeout=60).json()
    grant = {"user_id": created["id"], "amount": 1_000_000_000, "reason": "bench"}
    httpx.post(f"{base}/api/v1/admin/credits/grant", json=grant, headers=admin, timeout=60)
    login = httpx.post(f"{base}/api/v1/auth/login", json=user, timeout=60)
    return str(login.json()["access_token"])


def psql(query: str) -> str:
    done = subprocess.run(  # noqa: S603
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", query],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def transactions() -> int:
    """Committed transactions of the bench database so far."""
    query = f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{BENCH_DB}'"  # noqa: S608
    return int(psql(query))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), contention-proof unlike wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connections() -> int:
    query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{BENCH_DB}'"  # noqa: S608
    return int(psql(query))


def wrk(
    url: str, seconds: int, conns: int, pid: int, script: str | None = None
) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script:
            lua.write(script)
            command[1:1] = ["-s", lua.name]
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.5):
            peak = max(peak, connections())

    sampler = threading.Thread(target=sample)
    cpu_before, xacts_before = cpu_seconds(pid), transactions()
    sampler.start()
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    finally:
        stop.set()
        sampler.join()
        Path(lua.name).unlink()
    time.sleep(1.5)  # backends report their transaction counts about once a second
    cpu, xacts = cpu_seconds(pid) - cpu_before, transactions() - xacts_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def ms(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        if match is None:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50": ms("50"),
        "p99": ms("99"),
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
        "db_connections": float(peak),
        "cpu_ms": cpu * 1000 / max(done, 1),
        "xacts": xacts / max(done, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    url = asyncio.run(fresh_postgres(BENCH_DB))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "DATABASE_URL": url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "REDIS_KEY_PREFIX": f"bench-capacity-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "development",
        "JOBS_ENABLED": "false",
        "SELLERDESK_ROOT": str(ROOT),
        "RATE_LIMIT_DEFAULT": "100000000/minute",
        "RATE_LIMIT_GLOBAL": "100000000/minute",
        "CREDITS_REPEAT_WINDOW": "0",  # every lookup is a real charge
    }
    cli(env, "migrate")
    cli(env, "seed")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(  # noqa: S603
        [str(Path(sys.executable).with_name("sellerdesk")), "serve", "--port", str(port)],
        env=env,
        cwd=tempfile.gettempdir(),
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        admin = {"email": "admin@example.com", "password": "admin-password"}
        token = httpx.post(f"{base}/api/v1/auth/login", json=admin, timeout=60).json()[
            "access_token"
        ]
        auth = {"Authorization": f"Bearer {token}"}
        me = httpx.get(f"{base}/api/v1/users/me", headers=auth).json()
        grant = {"user_id": me["id"], "amount": 1_000_000_000, "reason": "bench"}
        httpx.post(f"{base}/api/v1/admin/credits/grant", json=grant, headers=auth)
        product = httpx.get(f"{base}/api/v1/products?page_size=1").json()["items"][0]["id"]
        asin = next(
            item["asin"]
            for item in httpx.get(f"{base}/api/v1/products?page_size=100").json()["items"]
            if item.get("asin")
        )
        header = f'wrk.headers["Authorization"] = "{auth["Authorization"]}"'
        payers = [payer_token(base, auth, n) for n in range(PAYERS)]
        scenarios = [
            ("GET /health (baseline)", "/health", None),
            ("GET /products/{id} (cache hit)", f"/api/v1/products/{product}", None),
            ("GET /products?page_size=20 (cache hit)", "/api/v1/products?page_size=20", None),
            ("GET /users/me (token + user read)", "/api/v1/users/me", f"{header}\n"),
            (
                "POST /product/asin, one payer (row lock)",
                "/api/v1/product/asin",
                POST_LUA.format(body=json.dumps({"asin": asin}), headers=header),
            ),
            (
                f"POST /product/asin, {PAYERS} payers",
                "/api/v1/product/asin",
                ROTATING_LUA.format(
                    body=json.dumps({"asin": asin}),
                    tokens=", ".join(f'"Bearer {token}"' for token in payers),
                ),
            ),
            (
                "POST /auth/login (argon2id, default cost)",
                "/api/v1/auth/login",
                POST_LUA.format(body=json.dumps(admin), headers=""),
            ),
        ]
        for name, path, script in scenarios:
            if script is None:
                httpx.get(f"{base}{path}")  # warm the cache
            result = wrk(f"{base}{path}", args.seconds, args.connections, server.pid, script)
            print(
                f"{name:<44} {result['rps']:7.0f} req/s  p50 {result['p50']:7.1f} ms  "
                f"p99 {result['p99']:7.1f} ms  non-2xx {result['errors']:.0f}  "
                f"CPU {result['cpu_ms']:6.2f} ms/req  DB transactions {result['xacts']:4.1f}/req  "
                f"DB connections {result['db_connections']:.0f}"
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=90)  # queued logins finish first (graceful shutdown)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
