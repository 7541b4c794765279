"""A real uvicorn serving the app on a free loopback port, and headless Chromium driving it.

Chromium is Debian's (`apt-get install chromium`; `CHROMIUM_PATH` overrides /usr/bin/chromium),
driven by Playwright's Python package: no browser is downloaded. Without Chromium these tests
skip, except under CI=true, where they fail. Screenshots of every page land in `screenshots/`
(git-ignored) at the root of the repository.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "screenshots"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN = ("browser-admin@example.com", "admin-password-1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return
    if IN_CI:
        raise pytest.UsageError(
            f"CI=true and no Chromium at {CHROMIUM}: the browser tests must run"
        )
    for item in items:
        item.add_marker(pytest.mark.skip(reason=f"no Chromium at {CHROMIUM}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A migrated SQLite database, an admin, and `uvicorn sellerdesk.main:app` on a free port."""
    folder = Path(tempfile.mkdtemp(prefix="sellerdesk-browser-"))
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
        "ENVIRONMENT": "test",
        "SECRET_KEY": "browser-test-secret-key-0123456789abcdef",
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/browser.db",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        "PAYMENT_PROVIDER": "manual",
        "JOBS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }
    cli = [str(Path(sys.executable).parent / "sellerdesk")]
    subprocess.run([*cli, "migrate"], env=env, cwd=folder, check=True, capture_output=True)
    subprocess.run(
        [*cli, "create-admin", "--email", ADMIN[0], "--password", ADMIN[1]],
        env=env,
        cwd=folder,
        check=True,
        capture_output=True,
    )
    log = (folder / "uvicorn.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "sellerdesk.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((folder / "uvicorn.log").read_text()[-3000:])
            time.sleep(0.2)
        yield Server(url, env)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


@dataclass
class Visit:
    """A page of a fresh browser context, and what it saw go wrong."""

    page: Page
    base: str
    outside_requests: list[str]
    console_errors: list[str]

    async def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    async def open(self, path: str) -> Any:
        return await self.page.goto(f"{self.base}{path}")


@pytest.fixture
async def visit(browser: Browser, server: Server) -> AsyncIterator[Visit]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    seen = Visit(page, server.url, [], [])
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith(server.url)
            else seen.outside_requests.append(request.url)
        ),
    )
    page.on(
        "console",
        lambda message: (
            seen.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    yield seen
    await context.close()
