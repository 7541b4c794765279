"""The service from outside: `sellerdesk serve` (real uvicorn) on a free port, migrated and seeded.

Tests that talk to the service the way a client does (schemathesis, the generated client, the
API guide's curl walkthrough) use `start_live_server()` through a module-scoped fixture. Each
server gets its own database (a scratch PostgreSQL database with Redis under a fresh key prefix
on `TEST_BACKEND=postgres`, a SQLite file otherwise), so it never meets the other tests' rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import _ROOT_TAG, PG_URL, REDIS_URL, _worker, is_postgres, recreate_pg_database

BIN = Path(sys.executable).parent
DEMO_ADMIN = ("admin@example.com", "admin-password")
DEMO_USER = ("user@example.com", "user-password")


@dataclass(frozen=True)
class LiveServer:
    url: str
    env: dict[str, str]

    def login(self, email: str, password: str) -> str:
        """A fresh access token for the account."""
        response = httpx.post(
            f"{self.url}/api/v1/auth/login", json={"email": email, "password": password}
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_async(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    # A thread of its own: the test session's event loop may exist in this one.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro_factory())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _recreate_pg_database(name: str) -> str:
    urls: list[str] = []

    async def recreate() -> None:
        urls.append(await recreate_pg_database(name))

    _run_async(recreate)
    return urls[0]


def _drop_pg_database(name: str) -> None:
    async def drop() -> None:
        admin = create_async_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    _run_async(drop)


@contextmanager
def start_live_server(label: str, **settings: str) -> Iterator[LiveServer]:
    """Migrate, seed and serve a fresh service; stopped (and its database dropped) on exit."""
    folder = Path(tempfile.mkdtemp(prefix=f"sellerdesk-live-{label}-"))
    database = f"sellerdesk_live_{_ROOT_TAG}_{_worker()}_{label}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "STRIPE_", "SPAPI_", "AUTH_SUPABASE_"))
    }
    env.update(
        ENVIRONMENT="test",
        SECRET_KEY="live-test-secret-key-0123456789abcdef-0123456789",
        DATABASE_URL=(
            _recreate_pg_database(database)
            if is_postgres()
            else f"sqlite+aiosqlite:///{folder}/live.db"
        ),
        PASSWORD_HASH_MEMORY_KIB="1024",
        PASSWORD_HASH_TIME_COST="1",
        LOG_LEVEL="WARNING",
        LOG_JSON="true",
        PAYMENT_PROVIDER="manual",
        JOBS_ENABLED="false",
    )
    if is_postgres():
        prefix = f"sdlive:{_ROOT_TAG}:{os.urandom(4).hex()}"
        env.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix)
    env.update(settings)
    sellerdesk = str(BIN / "sellerdesk")
    # cwd: a folder without a .env, so only these settings apply.
    subprocess.run([sellerdesk, "migrate"], env=env, cwd=folder, check=True, capture_output=True)
    seed_env = {**env, "ENVIRONMENT": "development"}  # demo data is a development thing
    subprocess.run([sellerdesk, "seed"], env=seed_env, cwd=folder, check=True, capture_output=True)
    port = free_port()
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        [sellerdesk, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, server, folder / "server.log")
        yield LiveServer(url=url, env=env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        if is_postgres():
            _drop_pg_database(database)
            _delete_redis_keys(env["REDIS_KEY_PREFIX"])
        shutil.rmtree(folder, ignore_errors=True)


def _delete_redis_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _wait_until_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not become ready: {log.read_text()[-3000:]}")
