"""The benchmark of issue 14: one API process against a bare FastAPI app, on this machine.

    make bench            # full run (15 s per scenario)
    make bench-quick      # under 3 minutes (5 s per scenario)
    .venv/bin/python bench/run.py [--quick] [--seconds N] [--connections N] [--no-write]

Needs PostgreSQL and Redis on 127.0.0.1 (the tests' services) and `wrk` (Debian package `wrk`).
It creates a fresh database `sellerdesk_bench` (dropped first if it exists), uses a Redis key
prefix of its own (deleted at the end; Redis is never flushed), migrates, seeds the demo data and
10,000 more products, and starts the service as docs/deploy.md does (`sellerdesk serve`: uvicorn,
one worker, uvloop + httptools, no access log) pinned to core 0 with `taskset`; `wrk` runs pinned
to core 1. S0 is a bare FastAPI app (`GET /` returning JSON) under the same uvicorn, measured in
the same run, and every figure is also given as a ratio to it:

    S0 bare app                    S4 paid ASIN lookup, X-API-Key, distinct codes
    S1 cached product list         S5 FNSKU batch of 1,000 codes (ms)
    S2 search + price filter       S6 checkout (cart + order), orders/s
       on 10,000 products, misses  S7 login (ms, argon2id at the OWASP minimum), and S1's p99
    S3 cached product detail          while logins run

Results go to bench/RESULTS.md (between its `bench:` markers) and bench/last-run.json; the last
line printed is `bench: S1=… S2=… S3=… S4=… S6=… (ratios to S0)`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))
from catalog import PG_ADMIN_URL, cli, fresh_postgres  # noqa: E402

WRK = BENCH / "wrk"
BENCH_DB = "sellerdesk_bench"
REDIS_URL = "redis://127.0.0.1:6379/0"
SEARCH_PRODUCTS = 10_000
BUYERS = 32
PASSWORD = "bench-password-123"  # noqa: S105 (a throwaway account of the bench database)
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# The seed's extra products: five words to search for, prices 1.00-500.99, an ASIN each (the
# paid scenarios' distinct codes) and stock that no run can exhaust.
SEED_PRODUCTS_SQL = """
INSERT INTO product (name, description, price, currency, stock_quantity, low_stock_threshold,
                     category_id, sku, asin, images, is_active, created_at, updated_at)
SELECT 'Bench ' || (ARRAY['mug', 'lamp', 'chair', 'desk', 'pen'])[1 + i % 5] || ' ' || i,
       'Bench product number ' || i || ', for the search scenario.',
       (1 + i % 500) + (i % 100) / 100.0, :currency, 1000000000, 5,
       (SELECT min(id) FROM category), 'BENCH-' || lpad(i::text, 6, '0'),
       'B0' || lpad(i::text, 8, '0'), '[]', true, now(), now()
FROM generate_series(1, :n) AS i
"""


@dataclass
class Load:
    """One wrk run: requests per second, latency percentiles (ms), server CPU per request."""

    rps: float
    p50: float
    p99: float
    requests: int
    errors: int
    cpu_ms: float


# --------------------------------------------------------------------------- processes


def pinned(core: int) -> list[str]:
    """`taskset -c core` when this machine has that core (a 1-core machine runs unpinned)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


@contextmanager
def serving(command: list[str], env: dict[str, str], base: str) -> Iterator[int]:
    """Start a server pinned to core 0, wait for it to answer, yield its pid, stop it."""
    server = subprocess.Popen([*pinned(0), *command], env=env, cwd=BENCH)  # noqa: S603
    try:
        for _ in range(600):
            if server.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {server.returncode}")
            try:
                httpx.get(base + "/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def wrk(
    base: str,
    path: str,
    seconds: int,
    connections: int,
    pid: int,
    *,
    script: str | None = None,
    args: tuple[str, ...] = (),
    threads: int = 2,
    profile: str | None = None,
) -> Load:
    command = [*pinned(1), "wrk", f"-t{min(threads, connections)}", f"-c{connections}"]
    command += [f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        command += ["-s", str(WRK / script)]
    command.append(base + path)
    if args:
        command += ["--", *args]
    before = cpu_seconds(pid)
    with profiling(pid, seconds, profile):
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    cpu = cpu_seconds(pid) - before
    done = int(_match(r"(\d+) requests in", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"Socket errors: .*timeout (\d+)", out)
    return Load(
        rps=float(_match(r"Requests/sec:\s+([\d.]+)", out)),
        p50=_ms(out, "50"),
        p99=_ms(out, "99"),
        requests=done,
        errors=(int(errors.group(1)) if errors else 0)
        + (int(timeouts.group(1)) if timeouts else 0),
        cpu_ms=cpu * 1000 / max(done, 1),
    )


PROFILES: Path | None = None  # --profile DIR: py-spy samples of every loaded scenario
EXTRA_ENV: dict[str, str] = {}  # --env NAME=VALUE: settings of the served app
SOURCE = ROOT / "src"  # --src DIR: serve another checkout's package (before/after comparisons)


@contextmanager
def profiling(pid: int, seconds: int | None, name: str | None) -> Iterator[None]:
    """py-spy samples of the server during a run (collapsed stacks in PROFILES/<name>.txt)."""
    if PROFILES is None or name is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    PROFILES.mkdir(parents=True, exist_ok=True)
    duration = ("-d", str(seconds)) if seconds else ()
    recorder = subprocess.Popen(  # noqa: S603
        [
            *(spy, "record", "-p", str(pid), *duration, "-r", "250", "--nonblocking"),
            *("--format", "raw", "-o", str(PROFILES / f"{name}.txt")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        if not seconds:  # recording until now: py-spy writes its file on SIGINT
            recorder.send_signal(signal.SIGINT)
        recorder.wait()


def _match(pattern: str, out: str) -> str:
    found = re.search(pattern, out)
    if found is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{out}")
    return found.group(1)


def _ms(out: str, percent: str) -> float:
    found = re.search(rf"{percent}%\s+([\d.]+)(us|ms|s)\b", out)
    if found is None:
        return float("nan")
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


# --------------------------------------------------------------------------- setup


async def seed_products(url: str, currency: str) -> int:
    """Insert the bench products; the id of the first one."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        first = (await conn.execute(text("SELECT coalesce(max(id), 0) + 1 FROM product"))).scalar()
        await conn.execute(text(SEED_PRODUCTS_SQL), {"currency": currency, "n": SEARCH_PRODUCTS})
        await conn.execute(text("ANALYZE product"))
    await engine.dispose()
    return int(first or 1)


def delete_redis_prefix(prefix: str) -> None:
    """Delete this run's keys (only those under its own prefix; Redis is shared)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


class Accounts:
    """The bench's users, made through the public API: a payer with an API key and credits,
    and one logged-in buyer per checkout connection."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=120)
        login = self.http.post(
            "/api/v1/auth/login", json={"email": "admin@example.com", "password": "admin-password"}
        )
        login.raise_for_status()
        self.admin = {"Authorization": f"Bearer {login.json()['access_token']}"}

    def user(self, email: str, credits: int = 0) -> str:
        """Register `email`, grant it credits, log it in: its access token."""
        body = {"email": email, "password": PASSWORD}
        created = self.http.post("/api/v1/auth/register", json=body)
        created.raise_for_status()
        if credits:
            grant = {"user_id": created.json()["id"], "amount": credits, "reason": "bench"}
            self.http.post("/api/v1/admin/credits/grant", json=grant, headers=self.admin)
        login = self.http.post("/api/v1/auth/login", json=body)
        login.raise_for_status()
        return str(login.json()["access_token"])

    def api_key(self, token: str) -> str:
        made = self.http.post(
            "/api/v1/api-keys", json={"name": "bench"}, headers={"Authorization": f"Bearer {token}"}
        )
        made.raise_for_status()
        return str(made.json()["key"])


# --------------------------------------------------------------------------- the run


async def postgres_version() -> str:
    engine = create_async_engine(PG_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(text("SHOW server_version"))).scalar())
    finally:
        await engine.dispose()


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    pg = asyncio.run(postgres_version())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": model,
        "cores": os.cpu_count(),
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": pg or "unknown",
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],  # noqa: S607
    }


def single_latencies(http: httpx.Client, calls: list[tuple[str, dict[str, Any]]]) -> list[float]:
    times = []
    for path, request in calls:
        started = time.perf_counter()
        response = http.post(path, **request)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


def run(seconds: int, connections: int, quick: bool) -> dict[str, Any]:
    facts = machine()
    print(f"machine: {facts}", flush=True)
    prefix = f"bench-{os.getpid()}"
    port = 18000 + os.getpid() % 1000
    base = f"http://127.0.0.1:{port}"
    uvicorn_flags = ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    uvicorn_flags += ["--log-level", "warning", "--host", "127.0.0.1", "--port", str(port)]
    results: dict[str, Any] = {"machine": facts, "seconds": seconds, "connections": connections}
    latency_seconds = max(3, seconds // 3)

    # S0: the bare app, same uvicorn flags, same cores; measured before and after the service
    # (the machine is shared: the mean of both is what the ratios divide by).
    bare = [sys.executable, "-m", "uvicorn", "bare:app", *uvicorn_flags]

    def measure_bare() -> dict[str, Any]:
        with serving(bare, dict(os.environ), base) as pid:
            wrk(base, "/", 2, connections, pid)  # warm up
            load = wrk(base, "/", seconds, connections, pid)
            one = wrk(base, "/", latency_seconds, 1, pid)
            print(f"S0 bare app: {load.rps:.0f} req/s", flush=True)
            return {"load": asdict(load), "one": asdict(one), "rss_mib": status_mib(pid, "VmHWM")}

    before = measure_bare()

    currency = "usd"
    url = asyncio.run(fresh_postgres(BENCH_DB))
    env = {
        **os.environ,
        "PYTHONPATH": str(SOURCE),
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "ENVIRONMENT": "development",
        "SELLERDESK_ROOT": str(ROOT),
        "CURRENCY": currency,
    }
    cli(env, "migrate")
    cli(env, "seed")
    first_product = asyncio.run(seed_products(url, currency))
    serve_env = {
        **env,
        "ENVIRONMENT": "production",  # as deployed: JSON logs, a real secret key
        "SECRET_KEY": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "JOBS_ENABLED": "false",  # as every file under deploy/ sets it (Celery beat runs jobs)
        "AMAZON_PROVIDER": "local",
        # The bench measures cost, not the limits: they are still checked on every paid call.
        "RATE_LIMIT_DEFAULT": "1000000000/minute",
        "RATE_LIMIT_GLOBAL": "1000000000/minute",
        **EXTRA_ENV,
    }
    serve = [str(Path(sys.executable).with_name("sellerdesk")), "serve", "--port", str(port)]
    try:
        with serving(serve, serve_env, base) as pid:
            results["idle_rss_mib"] = status_mib(pid, "VmRSS")
            results.update(scenarios(base, pid, seconds, connections, first_product, quick))
            results["peak_rss_mib"] = status_mib(pid, "VmHWM")
    finally:
        delete_redis_prefix(prefix)
    after = measure_bare()
    mean = {
        key: (before["load"][key] + after["load"][key]) / 2
        for key in ("rps", "p50", "p99", "cpu_ms")
    }
    results["S0"] = {**before, "load": {**before["load"], **mean}, "runs": [before, after]}
    return results


def scenarios(
    base: str, pid: int, seconds: int, connections: int, first_product: int, quick: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    accounts = Accounts(base)
    http = accounts.http
    latency_seconds = max(3, seconds // 3)

    def measure(name: str, path: str, **options: Any) -> None:
        load = wrk(base, path, seconds, connections, pid, profile=name, **options)
        one = wrk(base, path, latency_seconds, 1, pid, **options)
        out[name] = {"load": asdict(load), "one": asdict(one), "rss_mib": status_mib(pid, "VmRSS")}
        print(
            f"{name}: {load.rps:.0f} req/s p50 {load.p50:.2f} ms p99 {load.p99:.2f} ms, "
            f"errors {load.errors}; one connection p99 {one.p99:.2f} ms",
            flush=True,
        )

    products = "/api/v1/products?page_size=20"
    for path in (products, f"/api/v1/products/{first_product}"):
        http.get(path).raise_for_status()  # the cache is warm
    measure("S1", products)
    measure("S2", "/", script="search.lua", args=(str(time.time_ns() % 100_000),))
    measure("S3", f"/api/v1/products/{first_product}")

    payer = accounts.user("payer@bench.example.com", credits=1_000_000_000)
    key = accounts.api_key(payer)
    measure("S4", "/", script="asin.lua", args=(key, str(SEARCH_PRODUCTS)))

    # S5: batches of 1,000 distinct codes (a stickerless unit's FNSKU is its ASIN).
    batches = [
        [f"B0{(n * 1000 + i) % SEARCH_PRODUCTS + 1:08d}" for i in range(1000)] for n in range(12)
    ]
    calls = [
        ("/api/v1/conversion/fnsku/batch", {"json": {"fnskus": b}, "headers": {"X-API-Key": key}})
        for b in batches
    ]
    times = single_latencies(http, calls[:2])  # warm up
    with profiling(pid, None, "S5"):
        times = single_latencies(http, calls[2:])
    out["S5"] = {
        "ms_median": statistics.median(times),
        "ms_max": max(times),
        "calls": len(times),
        "rss_mib": status_mib(pid, "VmRSS"),
    }
    print(f"S5: FNSKU batch of 1,000 in {out['S5']['ms_median']:.1f} ms (median)", flush=True)

    # S6: one buyer per connection (cart + checkout), one wrk thread per connection.
    buyers = [accounts.user(f"buyer{n}@bench.example.com") for n in range(connections)]
    load = wrk(
        base,
        "/",
        seconds,
        connections,
        pid,
        script="checkout.lua",
        args=(str(first_product + 100), *buyers),
        threads=connections,
        profile="S6",
    )
    out["S6"] = {
        "load": asdict(load),
        "orders_per_second": load.rps / 3,
        "rss_mib": status_mib(pid, "VmRSS"),
    }
    print(
        f"S6: {load.rps / 3:.0f} orders/s ({load.rps:.0f} req/s), errors {load.errors}", flush=True
    )

    # S7: one login at a time, then S1 while logins run on 4 more connections.
    login = {"json": {"email": "payer@bench.example.com", "password": PASSWORD}}
    logins = single_latencies(http, [("/api/v1/auth/login", login)] * (10 if quick else 30))
    storm = subprocess.Popen(  # noqa: S603
        [
            *pinned(1),
            *("wrk", "-t1", "-c4", f"-d{seconds + 2}s", "-s", str(WRK / "login.lua")),
            *(base + "/", "--", "payer@bench.example.com", PASSWORD),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    during = wrk(base, products, seconds, connections, pid)
    storm_out = storm.communicate()[0]
    out["S7"] = {
        "login_ms_median": statistics.median(logins),
        "login_ms_p95": sorted(logins)[int(len(logins) * 0.95) - 1],
        "storm_logins_per_second": float(_match(r"Requests/sec:\s+([\d.]+)", storm_out)),
        "s1_during_storm": asdict(during),
    }
    print(
        f"S7: login {out['S7']['login_ms_median']:.1f} ms (median); S1 during a login storm "
        f"{during.rps:.0f} req/s p99 {during.p99:.2f} ms",
        flush=True,
    )
    return out


# --------------------------------------------------------------------------- report


def ratios(results: dict[str, Any]) -> dict[str, float]:
    bare = results["S0"]["load"]["rps"]
    found = {name: results[name]["load"]["rps"] / bare for name in ("S1", "S2", "S3", "S4")}
    found["S6"] = results["S6"]["orders_per_second"] / bare
    return found


def report(results: dict[str, Any], label: str) -> str:
    r = ratios(results)
    runs = [run["load"] for run in results["S0"]["runs"]]
    m = results["machine"]
    lines = [
        f"### {label}: {m['date']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; load average at start "
        f"{m['loadavg_at_start']} (the machine is shared); Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, {m['wrk']}. {results['seconds']} s per scenario, "
        f"{results['connections']} connections; server on core 0, wrk on core 1. S0 = mean of "
        f"a run before ({runs[0]['rps']:,.0f} req/s) and after ({runs[1]['rps']:,.0f} req/s) "
        "the service. CPU ratio = S0's server CPU per request / the scenario's (what the ratio "
        "would be on a core of its own; S6 per order).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | ratio to S0 | 1-conn p99 ms | CPU ms/req "
        "| CPU ratio | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "S0": "S0 bare FastAPI `GET /`",
        "S1": "S1 cached list `GET /products?page_size=20`",
        "S2": "S2 search + price filter, 10,000 products (misses)",
        "S3": "S3 cached detail `GET /products/{id}`",
        "S4": "S4 paid `POST /product/asin`, X-API-Key, distinct codes",
    }
    bare = results["S0"]["load"]["rps"]
    bare_cpu = results["S0"]["load"]["cpu_ms"]
    for name, title in names.items():
        load, one = results[name]["load"], results[name]["one"]
        lines.append(
            f"| {title} | {load['rps']:,.0f} | {load['p50']:.2f} | {load['p99']:.2f} | "
            f"{load['rps'] / bare:.3f} | {one['p99']:.2f} | {load['cpu_ms']:.3f} "
            f"| {bare_cpu / load['cpu_ms']:.3f} | {load['errors']} |"
        )
    s6 = results["S6"]["load"]
    lines.append(
        "| S6 checkout (2 cart PUTs + order), **orders/s** "
        f"| {results['S6']['orders_per_second']:,.0f} "
        f"| {s6['p50']:.2f} | {s6['p99']:.2f} | {r['S6']:.4f} | | {s6['cpu_ms'] * 3:.3f}/order "
        f"| {bare_cpu / (s6['cpu_ms'] * 3):.4f} | {s6['errors']} |"
    )
    s7 = results["S7"]
    during = s7["s1_during_storm"]
    lines += [
        "",
        f"- S5 FNSKU batch of 1,000: **{results['S5']['ms_median']:.1f} ms** median "
        f"(max {results['S5']['ms_max']:.1f} ms, {results['S5']['calls']} calls).",
        f"- S7 login (argon2id m=19456 KiB, t=2): **{s7['login_ms_median']:.1f} ms** median, "
        f"p95 {s7['login_ms_p95']:.1f} ms; S1 during a login storm "
        f"({s7['storm_logins_per_second']:.0f} logins/s on 4 connections): "
        f"{during['rps']:,.0f} req/s, p99 {during['p99']:.2f} ms.",
        f"- Server RSS: {results['idle_rss_mib']:.0f} MiB after start, "
        f"**{results['peak_rss_mib']:.0f} MiB peak** (VmHWM) after the run; "
        f"the bare app peaked at {results['S0']['rss_mib']:.0f} MiB. RSS after each scenario: "
        + ", ".join(
            f"{name} {results[name]['rss_mib']:.0f}"
            for name in ("S1", "S2", "S3", "S4", "S5", "S6")
        )
        + " MiB.",
        "",
        "`" + last_line(results) + "`",
        "",
    ]
    return "\n".join(lines)


def last_line(results: dict[str, Any]) -> str:
    r = ratios(results)
    return "bench: " + " ".join(f"{k}={v:.3f}" for k, v in r.items()) + " (ratios to S0)"


def write_results(section: str) -> None:
    path = BENCH / "RESULTS.md"
    current = path.read_text() if path.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{section}{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per scenario (under 3 min)")
    parser.add_argument("--seconds", type=int, help="seconds per scenario (default 15, quick 5)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the loaded runs into DIR")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting of the app"
    )
    parser.add_argument("--src", help="serve the sellerdesk package under DIR (default src/)")
    args = parser.parse_args()
    global PROFILES, SOURCE
    SOURCE = Path(args.src).resolve() if args.src else SOURCE
    PROFILES = Path(args.profile) if args.profile else None
    EXTRA_ENV.update(item.split("=", 1) for item in args.env)
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing: apt-get install -y wrk")
    seconds = args.seconds or (5 if args.quick else 15)
    results = run(seconds, args.connections, args.quick)
    label = "Quick run" if args.quick else "Full run"
    (BENCH / "last-run.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_write:
        write_results(report(results, label))
    print(report(results, label))
    print(last_line(results))


if __name__ == "__main__":
    main()
