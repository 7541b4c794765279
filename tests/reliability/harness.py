"""What the reliability tests share: a service stack of real processes, a tally of answers,
the figures each test reports, and `sellerdesk check`.

A `Stack` is one database (a scratch PostgreSQL database on `TEST_BACKEND=postgres`, a SQLite
file otherwise, or a database of a private cluster), a private `redis-server` of the test's
own (never the shared one), `sellerdesk serve` processes and `sellerdesk worker` processes, all
with the same environment (`tests/live_server.py`: cheap hashing, JSON logs, manual payments).

    async with Stack.open("mixed", redis=True) as stack:
        a, b = await stack.serve(), await stack.serve()
        ...
        report = await stack.check()      # `sellerdesk check --json`

Each test reports what it measured through the `figures` fixture (`tests/reliability/
conftest.py`); the lines are printed in the run's summary ("reliability figures") and, with
RELIABILITY_REPORT=path, appended to that file.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sellerdesk.models import DomainEvent, Product
from sellerdesk.seed import DEMO_ADMIN
from tests.conftest import _create_pg_database, is_postgres
from tests.live_server import SELLERDESK, Server, cli, environment
from tests.orders_factories import ADDRESS
from tests.private_redis import PrivateRedis, free_port

PASSWORD = "reliability-password-1"
# Paid routes are limited per payer; the load tests are about faults, not about the limit.
UNLIMITED = {"RATE_LIMIT_DEFAULT": "100000/minute", "RATE_LIMIT_GLOBAL": "1000000/minute"}


# --------------------------------------------------------------------------- answers


@dataclass
class Tally:
    """Every answer of a run, by operation and status (`"cut"` for a connection that broke)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, operation: str, answer: httpx.Response | BaseException) -> None:
        if isinstance(answer, BaseException):
            self.counts[operation, "cut"] += 1
            return
        status = str(answer.status_code)
        if 400 <= answer.status_code < 500:  # which refusal: `409 insufficient_stock`
            with suppress(ValueError, KeyError, TypeError):
                status = f"{status} {answer.json()['error']}"
        self.counts[operation, status] += 1
        if answer.status_code >= 500 and len(self.server_errors) < 20:
            self.server_errors.append(
                f"{answer.request.method} {answer.request.url.path} -> "
                f"{answer.status_code} {answer.text[:300]}"
            )

    async def call(self, operation: str, send: Awaitable[httpx.Response]) -> httpx.Response | None:
        """Await one request and count its answer; None when the connection broke."""
        started = time.monotonic()
        try:
            answer = await send
        except httpx.TransportError as exc:
            self.add(operation, exc)
            return None
        self.seconds.setdefault(operation, []).append(time.monotonic() - started)
        self.add(operation, answer)
        return answer

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    def statuses(self, operation: str | None = None) -> Counter[str]:
        found: Counter[str] = Counter()
        for (op, status), n in self.counts.items():
            if operation is None or op == operation:
                found[status] += n
        return found

    def count(self, status_prefix: str, operation: str | None = None) -> int:
        return sum(
            n for status, n in self.statuses(operation).items() if status.startswith(status_prefix)
        )

    def lines(self) -> list[str]:
        """`operation: total (status n, ...)` per operation, then the totals by status."""
        operations = sorted({op for op, _ in self.counts})
        lines = [
            f"  {op}: {sum(self.statuses(op).values())} ({_statuses(self.statuses(op))})"
            f"{_latency(self.seconds.get(op, []))}"
            for op in operations
        ]
        lines.append(f"  all: {self.requests} requests ({_statuses(self.statuses())})")
        return lines


def _latency(seconds: list[float]) -> str:
    if not seconds:
        return ""
    ordered = sorted(seconds)
    p50, p95 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, len(ordered) * 95 // 100)]
    return f" p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"


def _statuses(counts: Counter[str]) -> str:
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))


class Figures:
    """The lines a test reports (see the module docstring)."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def tally(self, title: str, tally: Tally) -> None:
        self.add(title)
        self.lines.extend(tally.lines())

    def text(self) -> str:
        return "\n".join([f"{self.test}:", *(f"  {line}" for line in self.lines)])


async def until(
    check: Callable[[], Awaitable[bool]], within: float, what: str, step: float = 0.1
) -> float:
    """Poll `check` until it holds; the seconds it took (fails after `within`)."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(step)


# --------------------------------------------------------------------------- the stack


class Stack:
    """A database, a private Redis and the service's processes (see the module docstring)."""

    def __init__(self, env: dict[str, str], folder: Path, redis: PrivateRedis | None) -> None:
        self.env = env
        self.folder = folder
        self.redis = redis
        self.servers: list[Server] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.admin: dict[str, str] = {}
        self.proxy: TcpProxy | None = None

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        label: str,
        *,
        database_url: str | None = None,
        redis: bool = True,
        redis_proxy: bool = False,
        seed: bool = True,
        **settings: str,
    ) -> AsyncIterator[Stack]:
        """Migrate (and seed) a fresh database, start a private Redis (reached through a
        `TcpProxy` with `redis_proxy`); everything is stopped and removed on exit.
        `database_url` replaces the scratch database."""
        folder = Path(tempfile.mkdtemp(prefix=f"sellerdesk-rel-{label}-"))
        private = PrivateRedis() if redis else None
        proxy: TcpProxy | None = None
        try:
            if private is not None:
                await asyncio.to_thread(private.start)
                if redis_proxy:
                    proxy = TcpProxy(private.port)
            if database_url is None:
                database_url = (
                    await _create_pg_database(f"_rel_{label}")
                    if is_postgres()
                    else f"sqlite+aiosqlite:///{folder}/service.db"
                )
            values = {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", **UNLIMITED}
            if private is not None:
                url = proxy.url if proxy is not None else private.url
                values.update(REDIS_URL=url, REDIS_KEY_PREFIX=f"rel:{label}")
            values.update(settings)
            stack = cls(environment(**values), folder, private)
            stack.proxy = proxy
            await asyncio.to_thread(cli, stack.env, "migrate")
            if seed:
                await asyncio.to_thread(cli, stack.env, "seed")
            try:
                yield stack
            finally:
                stack.stop_all()
        finally:
            if proxy is not None:
                proxy.close()
            if private is not None:
                private.close()
            shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ processes

    async def serve(self, **settings: str) -> Server:
        """One more `sellerdesk serve` process, ready (its own settings on top of the stack's)."""
        server = Server({**self.env, **settings})
        self.servers.append(server)
        await server.wait_ready()
        return server

    def kill(self, server: Server) -> None:
        """SIGKILL: no shutdown, no cleanup, connections cut mid-request."""
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)

    def start(self, command: str, *args: str, **settings: str) -> subprocess.Popen[bytes]:
        """`sellerdesk worker|beat ARGS` with the stack's settings (a broker must be set)."""
        log = (self.folder / f"{command}-{len(self.workers)}.log").open("wb")
        process = subprocess.Popen(
            [SELLERDESK, command, *args],
            env={**self.env, **settings},
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(process)
        return process

    def logs(self) -> str:
        """The tail of every process's log, for a failure message."""
        parts = [f"--- server {s.port}\n{s.log[-3000:]}" for s in self.servers]
        parts += [
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.folder.glob("*.log"))
        ]
        return "\n".join(parts)

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    # ------------------------------------------------------------------ data

    @asynccontextmanager
    async def engine(self) -> AsyncIterator[AsyncEngine]:
        engine = create_async_engine(self.database_url)
        try:
            yield engine
        finally:
            await engine.dispose()

    async def stocked_products(self, limit: int = 10) -> list[int]:
        """Ids of active products with stock to spare (the seeded demo catalog)."""
        async with self.engine() as engine, engine.connect() as conn:
            return list(
                await conn.scalars(
                    select(Product.id)
                    .where(Product.stock_quantity >= 50, Product.is_active.is_(True))
                    .order_by(Product.id)
                    .limit(limit)
                )
            )

    async def outbox_drained(self, within: float = 120) -> float:
        """Wait until every outbox event is done; the seconds it took (fails with the logs)."""

        async def drained() -> bool:
            async with self.engine() as engine, engine.connect() as conn:
                left = await conn.scalar(
                    select(func.count())
                    .select_from(DomainEvent)
                    .where(DomainEvent.status != "done")
                )
            return left == 0

        try:
            return await until(drained, within, "every outbox event done", step=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from exc

    async def check(self) -> dict[str, Any]:
        """`sellerdesk check --json`: the invariants report (exit 0 or 1, not 2)."""
        done = await asyncio.to_thread(
            subprocess.run,
            [SELLERDESK, "check", "--json"],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode in (0, 1), f"sellerdesk check failed:\n{done.stderr}"
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    async def login_admin(self, client: httpx.AsyncClient) -> dict[str, str]:
        self.admin = await login(client, *DEMO_ADMIN)
        return self.admin

    async def user(
        self, client: httpx.AsyncClient, credits: int = 0, label: str = "u"
    ) -> tuple[int, str, dict[str, str]]:
        """A new user (id, email, auth headers), `credits` granted by the admin."""
        email = f"{label}-{uuid.uuid4().hex[:10]}@example.com"
        created = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        headers = await login(client, email, PASSWORD)
        user_id = int(created.json()["id"])
        if credits:
            assert self.admin, "login_admin first"
            granted = await client.post(
                "/api/v1/admin/credits/grant",
                json={"user_id": user_id, "amount": credits, "reason": "reliability"},
                headers=self.admin,
            )
            assert granted.status_code == 200, granted.text
        return user_id, email, headers


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def check_lines(report: dict[str, Any]) -> list[str]:
    """The check's summary, each check's count of violations and the first violations."""
    counts = ", ".join(f"{c['name']} {c['violations']}" for c in report["checks"])
    shown = [f"  {v['check']}: {v['subject']}: {v['message']}" for v in report["violations"][:3]]
    more = len(report["violations"]) - len(shown)
    return [report["summary"], f"  per check: {counts}", *shown] + (
        [f"  ... and {more} more"] if more > 0 else []
    )


def client(server: Server, timeout: float = 30) -> httpx.AsyncClient:
    """A client of one server process (a pool big enough for the load tests)."""
    return httpx.AsyncClient(
        base_url=server.base_url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
    )


# --------------------------------------------------------------------------- load

Operation = Callable[[Tally], Awaitable[object]]


async def run_mix(
    tally: Tally,
    operations: dict[str, tuple[int, Operation]],
    *,
    seconds: float,
    concurrency: int,
    rng: Any,
) -> None:
    """`concurrency` loops, each picking a weighted random operation (`rng`: a seeded
    `random.Random`) and running it, until `seconds` have passed. Operations count their own
    requests in `tally`."""
    names = list(operations)
    weights = [operations[name][0] for name in names]
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        while time.monotonic() < deadline:
            name = rng.choices(names, weights)[0]
            await operations[name][1](tally)

    await asyncio.gather(*(loop() for _ in range(concurrency)))


# --------------------------------------------------------------------------- flows
# What customers do, request by request, each request counted under its own name.


async def place_order(
    t: Tally, http: httpx.AsyncClient, headers: dict[str, str], product: int, quantity: int
) -> dict[str, Any] | None:
    """Put `quantity` of `product` in the cart and check out; the order, or None. A checkout
    refused for stock empties the cart, as a customer would, so it does not refuse the next."""
    cart = await t.call(
        "cart",
        http.put(f"/api/v1/cart/items/{product}", json={"quantity": quantity}, headers=headers),
    )
    if cart is None or cart.status_code != 200:
        return None
    key = {"Idempotency-Key": f"checkout-{uuid.uuid4().hex}"}
    order = await t.call(
        "checkout",
        http.post("/api/v1/orders", json={"shipping_address": ADDRESS}, headers={**headers, **key}),
    )
    if order is not None and order.status_code == 409:
        await t.call("cart", http.delete("/api/v1/cart", headers=headers))
    if order is None or order.status_code != 201:
        return None
    placed: dict[str, Any] = order.json()
    return placed


async def start_payment(
    t: Tally, http: httpx.AsyncClient, headers: dict[str, str], order_id: int
) -> str | None:
    """The order's payment intent id (None when refused)."""
    intent = await t.call(
        "payment intent",
        http.post(
            "/api/v1/payments/create-payment-intent", json={"order_id": order_id}, headers=headers
        ),
    )
    if intent is None or intent.status_code != 200:
        return None
    intent_id: str = intent.json()["payment_intent_id"]
    return intent_id


async def confirm_payment(
    t: Tally, http: httpx.AsyncClient, headers: dict[str, str], order_id: int
) -> bool:
    answer = await t.call(
        "confirm payment",
        http.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=headers),
    )
    return answer is not None and answer.status_code == 200


async def cancel_order(
    t: Tally, http: httpx.AsyncClient, headers: dict[str, str], order_id: int
) -> bool:
    answer = await t.call("cancel", http.post(f"/api/v1/orders/{order_id}/cancel", headers=headers))
    return answer is not None and answer.status_code == 200


async def buy_credits(
    t: Tally, http: httpx.AsyncClient, headers: dict[str, str], pack_id: int
) -> bool:
    """Buy a credit pack with the manual gateway (start, then confirm)."""
    key = {"Idempotency-Key": f"pack-{uuid.uuid4().hex}"}
    started = await t.call(
        "credit purchase",
        http.post(
            "/api/v1/credits/purchase", json={"pack_id": pack_id}, headers={**headers, **key}
        ),
    )
    if started is None or started.status_code not in (200, 201):
        return False
    purchase = started.json()["purchase_id"]
    confirmed = await t.call(
        "confirm purchase",
        http.post(f"/api/v1/credits/purchases/{purchase}/confirm", headers=headers),
    )
    return confirmed is not None and confirmed.status_code == 200


# --------------------------------------------------------------------------- a TCP proxy


class TcpProxy:
    """A TCP proxy on a free 127.0.0.1 port to `target_port`, run in a thread of its own.

    `cut()` drops every connection through it and refuses new ones (the service behind it
    keeps its data); `freeze()` keeps every connection open and accepts new ones but forwards
    nothing (packets dropped: a partition nobody is told about); `restore()` undoes either.
    """

    def __init__(self, target_port: int, scheme: str = "redis") -> None:
        self.target_port = target_port
        self.scheme = scheme
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.restore()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        async def stop_flowing() -> None:
            self._flowing.clear()

        self._run(stop_flowing())

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    def restore(self) -> None:
        async def listen() -> None:
            self._flowing.set()
            if self._server is None:
                self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

        self._run(listen())

    def cut(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._run(close())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    await self._flowing.wait()
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers -= {writer, up_writer}
