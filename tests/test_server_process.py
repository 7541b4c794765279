"""The server process (`sellerdesk serve` execs into `sellerdesk.server`): it loads only what
serving needs. With JSON logs it never imports rich (nor pygments), without a Supabase JWKS URL
never cryptography, and never typer; each comes back with the setting that needs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from sellerdesk.config import Settings
from sellerdesk.server import LeftOut, command, left_out
from tests.conftest import Database, make_settings
from tests.private_redis import free_port

SELLERDESK = shutil.which("sellerdesk", path=str(Path(sys.executable).parent)) or "sellerdesk"

# Runs `python -m sellerdesk.server` as `sellerdesk serve` does, with uvicorn.run replaced by
# loading the app it would serve, then prints the modules the process has imported.
MODULES_OF_THE_SERVER = textwrap.dedent(
    """
    import importlib, json, runpy, sys
    import uvicorn

    def load_instead_of_serving(target, **options):
        module, _, name = target.partition(":")
        getattr(importlib.import_module(module), name)  # builds the app
        print(json.dumps(sorted(sys.modules)))

    uvicorn.run = load_instead_of_serving
    sys.argv = ["sellerdesk.server", "--port", "0"]
    runpy.run_module("sellerdesk.server", run_name="__main__", alter_sys=True)
    """
)


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "ENVIRONMENT": "production",
        "SECRET_KEY": "a-test-secret-key-that-is-long-enough-0123456789",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/server.db",
        "LOG_LEVEL": "WARNING",
        "JOBS_ENABLED": "false",
        **settings,
    }


def _server_modules(tmp_path: Path, **settings: str) -> tuple[set[str], str]:
    """The modules the server process imported, and what it logged."""
    done = subprocess.run(
        [sys.executable, "-c", MODULES_OF_THE_SERVER],
        cwd=tmp_path,
        env=_environment(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1])), done.stderr


def _tops(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_with_json_logs_the_server_imports_no_console_renderer_nor_cryptography(
    tmp_path: Path,
) -> None:
    modules, logged = _server_modules(tmp_path, LOG_LEVEL="INFO")
    tops = _tops(modules)
    assert {"fastapi", "sqlalchemy", "structlog", "jwt", "sellerdesk"} <= tops
    assert not tops & {"rich", "pygments", "cryptography", "typer"}, tops
    prepared = [json.loads(line) for line in logged.splitlines() if "server_process_" in line]
    assert [record["left_out"] for record in prepared] == [["cryptography", "rich"]], logged


def test_console_logs_and_a_jwks_url_bring_them_back(tmp_path: Path) -> None:
    modules, _ = _server_modules(
        tmp_path,
        LOG_JSON="false",
        AUTH_SUPABASE_JWKS_URL="https://example.supabase.co/auth/v1/.well-known/jwks.json",
    )
    assert {"rich", "cryptography"} <= _tops(modules)


def test_what_is_left_out_follows_the_settings() -> None:
    def settings(**values: Any) -> Settings:
        return make_settings("sqlite+aiosqlite:///unused.db", None, "unused", **values)

    assert left_out(settings(LOG_JSON=True)) == {"rich", "cryptography"}
    assert left_out(settings(LOG_JSON=False)) == {"cryptography"}
    jwks = "https://example.supabase.co/auth/v1/.well-known/jwks.json"
    assert left_out(settings(AUTH_SUPABASE_JWKS_URL=jwks)) == {"rich"}


def test_a_module_left_out_fails_to_import_with_the_setting_that_brings_it_back() -> None:
    finder = LeftOut(frozenset({"cryptography"}))
    with pytest.raises(ModuleNotFoundError, match="AUTH_SUPABASE_JWKS_URL"):
        finder.find_spec("cryptography.hazmat.primitives", None)
    assert finder.find_spec("cryptographyx", None) is None
    assert finder.find_spec("jwt", None) is None


def test_the_server_command_does_not_put_the_working_directory_on_the_path() -> None:
    argv = command("127.0.0.2", 8000, 2, reload=False)
    assert argv[:4] == [sys.executable, "-P", "-m", "sellerdesk.server"]
    assert argv[4:] == ["--host", "127.0.0.2", "--port", "8000", "--workers", "2"]
    assert command("127.0.0.1", 8000, 1, reload=True)[-1] == "--reload"


@pytest.fixture
def served(tmp_path: Path, database: Database) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = _environment(
        tmp_path,
        DATABASE_URL=make_url(database.url).render_as_string(hide_password=False),
        PASSWORD_HASH_MEMORY_KIB="1024",
        PASSWORD_HASH_TIME_COST="1",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SELLERDESK, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_becomes_the_server_process_in_place(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = served
    # Same process id (what a supervisor or a container's PID 1 watches), now the lean server.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"sellerdesk.server" in cmdline
    # cryptography's compiled core is not mapped; HS256 tokens are issued and accepted anyway.
    assert "cryptography" not in Path(f"/proc/{process.pid}/maps").read_text()
    email, password = "lean-server@example.com", "correct-horse-battery"
    register = httpx.post(
        f"{url}/api/v1/auth/register", json={"email": email, "password": password}, timeout=30
    )
    assert register.status_code == 201, register.text
    login = httpx.post(
        f"{url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30
    )
    assert login.status_code == 200, login.text
    me = httpx.get(
        f"{url}/api/v1/users/me",
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        timeout=10,
    )
    assert me.status_code == 200 and me.json()["email"] == email
