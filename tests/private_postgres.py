"""A private PostgreSQL cluster for tests that stop, start or break the database.

Tests must never stop or reconfigure the shared PostgreSQL server; a test that needs the
database to go away (and come back) starts its own cluster with this helper:

    with PrivatePostgres() as pg:          # initdb + start, in a temp dir, on a free port
        url = pg.create_database("app")    # postgresql+asyncpg://postgres@127.0.0.1:<port>/app
        pg.stop()                          # fast shutdown: every connection is dropped
        pg.start()                         # same data, same port
    # stopped and its directory deleted

`app_on(cluster, "name", **settings)` builds and starts an app on a fresh, migrated database of
the cluster. Tests take the `private_postgres` fixture (registered by `conftest.py`; one cluster
per module, started again before each test if a test left it stopped):

    async def test_x(private_postgres: PrivatePostgres) -> None: ...

The binaries come from `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`. They
refuse to run as root, so under root every command runs as `postgres` (`runuser -u postgres
--`) in a temp dir owned by that user. The cluster trusts local connections, listens on
127.0.0.1 only (its Unix socket lives in its own directory) and runs with `fsync=off`: it is
a throwaway. When the binaries are missing the fixture skips (fails under `CI=true`).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from fastapi import FastAPI

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_OS_USER = "postgres"


def find_bindir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`, or None when PostgreSQL is not installed."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            candidates.append(done.stdout.strip())
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivatePostgres:
    """One throwaway PostgreSQL cluster: `start()`, `stop()`, `create_database()`, `close()`."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) are not installed")
        self.bindir = found
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="sellerdesk-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.running = False
        if self.as_root:
            entry = pwd.getpwnam(_OS_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the server (idempotent) and wait until it accepts connections."""
        if self.running:
            return
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (roll back and drop every connection) or `immediate` (crash)."""
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ databases

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create (or recreate) database `name`; its async URL."""
        self.start()
        for statement in (f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'):
            self.psql(statement)
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement with `psql`; its output."""
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        )  # fmt: skip

    # ------------------------------------------------------------------ plumbing

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bindir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", _OS_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=self.root, timeout=120
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{log}".strip()
            )
        return done.stdout


@asynccontextmanager
async def app_on(
    cluster: PrivatePostgres, database: str, **settings: Any
) -> AsyncIterator[FastAPI]:
    """A started app on a fresh, migrated `database` of `cluster` (test settings + `settings`)."""
    from sellerdesk.main import create_app
    from sellerdesk.migrate import upgrade
    from tests.conftest import make_settings

    url = await asyncio.to_thread(cluster.create_database, database)
    await asyncio.to_thread(upgrade, url)
    app = create_app(make_settings(url, None, f"private:{database}", **settings))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
def private_postgres_cluster() -> Iterator[PrivatePostgres]:
    """One private cluster per test module (initdb costs a second or two)."""
    if find_bindir() is None:
        if IN_CI:
            pytest.fail("CI=true and the PostgreSQL binaries (initdb, pg_ctl) are missing")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    with PrivatePostgres() as cluster:
        yield cluster


@pytest.fixture
def private_postgres(private_postgres_cluster: PrivatePostgres) -> PrivatePostgres:
    """The module's private cluster, running (started again if an earlier test stopped it)."""
    private_postgres_cluster.start()
    return private_postgres_cluster
