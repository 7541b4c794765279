"""Real `sellerdesk` processes for black-box tests: the CLI, `serve` on a free loopback port.

Each server logs to a file (a pipe nobody reads would fill and block it) and is stopped with
SIGTERM, the way a container runtime stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SELLERDESK = str(Path(sys.executable).with_name("sellerdesk"))

# What every live server runs with unless a test says otherwise: cheap password hashing, JSON
# logs, no scheduler, the built-in payment gateway, no `.env` from the developer's checkout.
BASE_ENV = {
    "ENVIRONMENT": "development",
    "SECRET_KEY": "live-server-secret-0123456789abcdef-0123456789abcdef",
    "PASSWORD_HASH_MEMORY_KIB": "1024",
    "PASSWORD_HASH_TIME_COST": "1",
    "LOG_LEVEL": "WARNING",
    "LOG_JSON": "true",
    "JOBS_ENABLED": "false",
    "PAYMENT_PROVIDER": "manual",
    "SELLERDESK_ROOT": str(ROOT),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**settings: str) -> dict[str, str]:
    """The process environment: this one, minus any sellerdesk setting, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in _settings_names()}
    env.update(BASE_ENV)
    env.update(settings)
    return env


def _settings_names() -> set[str]:
    from sellerdesk.config import Settings

    return set(Settings.model_fields) | {"PROMETHEUS_MULTIPROC_DIR"}


def cli(env: dict[str, str], *args: str) -> str:
    """Run `sellerdesk ARGS` (the command the deploy guide shows) and return its output."""
    done = subprocess.run(
        [SELLERDESK, *args],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"sellerdesk {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


class Server:
    """`sellerdesk serve --host 127.0.0.1 --port P [ARGS]` in its own process."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="sellerdesk-serve-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [SELLERDESK, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env=env,
            cwd=tempfile.gettempdir(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, within: float = 60) -> None:
        """Until GET /health answers 200 (fails with the server's log if it died)."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited early:\n{self.log}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"the server did not start in {within} s:\n{self.log}")

    async def wait_for_log(self, text: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if text in self.log:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the server's log:\n{self.log}")

    def terminate(self) -> None:
        """SIGTERM, as `docker stop` and Kubernetes send it."""
        self.process.send_signal(signal.SIGTERM)

    async def wait_exit(self, within: float = 30) -> int:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        raise AssertionError(f"the server did not exit in {within} s:\n{self.log}")

    def stop(self) -> None:
        """Stop for good (teardown): SIGTERM, then SIGKILL if it does not go."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)
