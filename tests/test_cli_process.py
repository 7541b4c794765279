"""The `sellerdesk` command run as a real process, as an operator runs it.

Every expected failure (a port in use, a database that is missing or unreachable, a default
secret outside development) is one line on stderr and a non-zero exit, never a traceback.
`serve` serves, logs uvicorn's own lines in the structured format, and believes
`X-Forwarded-For` only from the proxies in FORWARDED_ALLOW_IPS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import Database
from tests.private_redis import free_port

SELLERDESK = shutil.which("sellerdesk", path=str(Path(sys.executable).parent)) or "sellerdesk"
START_TIMEOUT_SECONDS = 60.0


def run_cli(
    cwd: Path, *args: str, timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run `sellerdesk ARGS` with only the given settings in its environment."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(cwd),
        "ENVIRONMENT": "development",
        "LOG_LEVEL": "WARNING",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        **settings,
    }
    return subprocess.run(
        [SELLERDESK, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/cli.db"


@pytest.fixture
def migrated(database: Database) -> str:
    """The test run's migrated database (PostgreSQL or SQLite, as the run's backend)."""
    return make_url(database.url).render_as_string(hide_password=False)


# --------------------------------------------------------------------------- failures


def test_a_port_in_use_is_one_line(tmp_path: Path, migrated: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(tmp_path, "serve", "--port", str(port), DATABASE_URL=migrated)
    assert_one_line_failure(result, f"port {port}", "already in use", "--port")


def test_a_missing_sqlite_database_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nowhere.db"
    result = run_cli(tmp_path, "serve", "--port", str(free_port()), DATABASE_URL=url)
    assert_one_line_failure(result, "does not exist", "sellerdesk migrate")
    assert not (tmp_path / "nowhere.db").exists()


def test_an_empty_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    result = run_cli(tmp_path, "serve", "--port", str(free_port()), DATABASE_URL=url)
    assert_one_line_failure(result, "empty", "sellerdesk migrate")


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"], ["seed"]])
def test_an_unreachable_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    url = f"postgresql://postgres:hunter2-secret@127.0.0.1:{free_port()}/sellerdesk"
    line = assert_one_line_failure(run_cli(tmp_path, *command, DATABASE_URL=url), "cannot be used")
    assert "hunter2-secret" not in line and "***" in line


@pytest.mark.postgres_only
def test_a_database_that_does_not_exist_is_one_line(tmp_path: Path, database: Database) -> None:
    url = make_url(database.url).set(database="sellerdesk_no_such_database")
    result = run_cli(tmp_path, "migrate", DATABASE_URL=url.render_as_string(hide_password=False))
    assert_one_line_failure(result, "does not exist")


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["seed", "--force"]])
def test_a_default_secret_outside_development_is_one_line(
    tmp_path: Path, sqlite_url: str, command: list[str]
) -> None:
    result = run_cli(tmp_path, *command, ENVIRONMENT="production", DATABASE_URL=sqlite_url)
    assert result.returncode == 2
    assert_one_line_failure(result, "invalid configuration", "SECRET_KEY", "production")


def test_an_invalid_setting_is_one_line(tmp_path: Path, sqlite_url: str) -> None:
    result = run_cli(
        tmp_path, "migrate", DATABASE_URL=sqlite_url, LOGIN_FAILURE_LIMIT_PER_ADDRESS="lots"
    )
    assert_one_line_failure(result, "LOGIN_FAILURE_LIMIT_PER_ADDRESS", "10/minute")


# --------------------------------------------------------------------------- driverless URLs


def test_a_sqlite_url_without_a_driver_is_accepted(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", DATABASE_URL=f"sqlite:///{tmp_path}/plain.db")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plain.db").exists()


@pytest.mark.postgres_only
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_without_a_driver_uses_asyncpg(
    tmp_path: Path, database: Database, scheme: str
) -> None:
    url = make_url(database.url).render_as_string(hide_password=False)
    plain = url.replace("postgresql+asyncpg://", f"{scheme}://", 1)
    result = run_cli(tmp_path, "migrate", DATABASE_URL=plain)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


# --------------------------------------------------------------------------- serving


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def serve(tmp_path: Path, migrated: str) -> Iterator[Callable[..., Served]]:
    """Start `sellerdesk serve` with extra settings; every server is stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "ENVIRONMENT": "development",
            "DATABASE_URL": migrated,
            "LOG_LEVEL": "INFO",
            "LOG_JSON": "true",
            "PASSWORD_HASH_MEMORY_KIB": "1024",
            "PASSWORD_HASH_TIME_COST": "1",
            "JOBS_ENABLED": "false",
            **settings,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [SELLERDESK, "serve", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        served = Served(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                    return served
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _stop(served: Served) -> None:
    served.process.send_signal(signal.SIGINT)
    served.process.wait(timeout=15)


def _fail_login(served: Served, client_ip: str) -> int:
    response = httpx.post(
        f"{served.url}/api/v1/auth/login",
        json={"email": "someone@example.com", "password": "wrong-password"},
        headers={"X-Forwarded-For": client_ip},
        timeout=10,
    )
    return response.status_code


def test_serve_serves_behind_its_trusted_proxy_with_structured_logs(
    serve: Callable[..., Served],
) -> None:
    served = serve(LOGIN_FAILURE_LIMIT_PER_ADDRESS="2/minute")
    docs = httpx.get(f"{served.url}/docs", timeout=5)
    assert docs.status_code == 200 and "https://" not in docs.text
    assert httpx.get(f"{served.url}/api/v1/credits/packs", timeout=5).status_code == 200
    # The test talks from 127.0.0.1, the default trusted proxy: X-Forwarded-For names the
    # client, and each client has its own failed-login count.
    assert [_fail_login(served, "203.0.113.7") for _ in range(3)] == [401, 401, 429]
    assert _fail_login(served, "203.0.113.8") == 401
    _stop(served)
    records = [json.loads(line) for line in served.lines()]  # each line is one JSON object
    uvicorn = [r for r in records if r.get("logger", "").startswith("uvicorn")]
    assert any("Uvicorn running on" in r["event"] for r in uvicorn), records
    assert any("Shutting down" in r["event"] for r in uvicorn), records
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)
    access = [r for r in records if r.get("event") == "request"]
    assert {r["path"] for r in access} >= {"/docs", "/api/v1/credits/packs"}
    assert not [r for r in records if r.get("logger") == "uvicorn.access"]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(serve: Callable[..., Served]) -> None:
    served = serve(LOGIN_FAILURE_LIMIT_PER_ADDRESS="2/minute", FORWARDED_ALLOW_IPS="10.9.9.9")
    assert [_fail_login(served, "203.0.113.7") for _ in range(2)] == [401, 401]
    # The header is not believed: every request is the peer's, already at its limit.
    assert _fail_login(served, "203.0.113.8") == 429
