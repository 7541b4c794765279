"""A redis-server of the test's own, to stop and restart without touching the shared one.

Tests about Redis outages must never stop the shared Redis (other test runs use it). This module
starts a private `redis-server` on a free 127.0.0.1 port, with no persistence
(`--save "" --appendonly no`) and its files in a temporary directory, and can stop it and start
it again *on the same port* — what a restart of a production Redis looks like to the app.

    async def test_x(private_redis: PrivateRedis, make_app: AppFactory) -> None:
        app = await make_app(REDIS_URL=private_redis.url)
        private_redis.stop()      # the app's connections are now dead
        private_redis.start()     # same port, empty data set
        private_redis.restart()   # both at once

The `private_redis` fixture (registered in `conftest.py`) yields a started server and removes
it after the test whatever happened. Use `PrivateRedis` directly for a server shared by several
tests of one module. Every method is synchronous and returns once the server is down or
answers PING (typically within 50 ms), so it can be called from sync or async tests alike.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """One private redis-server: `start()`, `stop()`, `restart()`, `close()`; `url` to use it."""

    def __init__(self, port: int | None = None) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="sellerdesk-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server (on the same port as before) and wait until it answers PING."""
        if self.running:
            return
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.executable),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"private redis-server did not start on {self.port}:\n{output}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server; every client connection to it dies. A no-op when not running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port, with an empty data set."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@contextmanager
def started_redis() -> Iterator[PrivateRedis]:
    """A started private redis-server, stopped and removed when the block ends."""
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A started private redis-server, stopped and removed after the test."""
    with started_redis() as server:
        yield server
