"""The `sellerdesk` command: migrate, seed (idempotent), create-admin (never prompts), serve."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from sellerdesk.cli import app as cli
from sellerdesk.config import get_settings
from sellerdesk.seed import DEMO_ADMIN, DEMO_USER
from tests.auth_helpers import LOGIN, ME
from tests.conftest import AppFactory


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    get_settings.cache_clear()


async def invoke(database_url: str, *args: str, **settings: str) -> Result:
    """Run the CLI in a worker thread (it runs its own event loop), settings from the env."""
    env = {
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "development",
        "REDIS_URL": "",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "PASSWORD_HASH_TIME_COST": "1",
        "LOG_LEVEL": "WARNING",
        **settings,
    }

    def run() -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli, list(args), env=env, input="")
        finally:
            get_settings.cache_clear()

    return await asyncio.to_thread(run)


async def scalar(database_url: str, sql: str) -> object:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


async def login(
    make_app: AppFactory, database_url: str, email: str, password: str
) -> httpx.Response:
    app = await make_app(DATABASE_URL=database_url, REDIS_URL=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        response = await c.post(LOGIN, json={"email": email, "password": password})
        if response.status_code == 200:
            me = await c.get(
                ME, headers={"Authorization": f"Bearer {response.json()['access_token']}"}
            )
            assert me.status_code == 200
        return response


async def test_migrate_builds_the_schema_and_is_repeatable(database_url: str) -> None:
    result = await invoke(database_url, "migrate")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert await scalar(database_url, "SELECT count(*) FROM alembic_version") == 1
    assert await scalar(database_url, 'SELECT count(*) FROM "user"') == 0
    again = await invoke(database_url, "migrate")
    assert again.exit_code == 0, again.output


async def test_migrate_takes_no_arguments(database_url: str) -> None:
    result = await invoke(database_url, "migrate", "head")
    assert result.exit_code != 0


async def test_seed_is_idempotent_and_its_accounts_log_in(
    database_url: str, make_app: AppFactory
) -> None:
    assert (await invoke(database_url, "migrate")).exit_code == 0
    first = await invoke(database_url, "seed")
    assert first.exit_code == 0, first.output
    assert DEMO_ADMIN[0] in first.output
    users = await scalar(database_url, 'SELECT count(*) FROM "user"')
    second = await invoke(database_url, "seed")
    assert second.exit_code == 0, second.output
    assert await scalar(database_url, 'SELECT count(*) FROM "user"') == users == 2
    assert await scalar(database_url, 'SELECT count(*) FROM "user" WHERE is_superuser') == 1
    admin = await login(make_app, database_url, *DEMO_ADMIN)
    assert admin.status_code == 200, admin.text
    user = await login(make_app, database_url, *DEMO_USER)
    assert user.status_code == 200, user.text


async def test_seed_never_changes_an_existing_accounts_password(
    database_url: str, make_app: AppFactory
) -> None:
    assert (await invoke(database_url, "migrate")).exit_code == 0
    created = await invoke(
        database_url, "create-admin", "--email", DEMO_ADMIN[0], "--password", "my-own-password-1"
    )
    assert created.exit_code == 0, created.output
    seeded = await invoke(database_url, "seed")
    assert seeded.exit_code == 0, seeded.output
    assert DEMO_ADMIN[1] not in seeded.output  # not announced: it is not the password
    assert "left unchanged" in seeded.output
    kept = await login(make_app, database_url, DEMO_ADMIN[0], "my-own-password-1")
    assert kept.status_code == 200, kept.text
    demo = await login(make_app, database_url, DEMO_ADMIN[0], DEMO_ADMIN[1])
    assert demo.status_code == 401
    # The demo user did not exist: it was created with the demo password.
    assert (await login(make_app, database_url, *DEMO_USER)).status_code == 200


async def test_seed_never_promotes_or_credits_an_account_it_did_not_create(
    database_url: str,
) -> None:
    assert (await invoke(database_url, "migrate")).exit_code == 0
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    'INSERT INTO "user" (email, hashed_password, is_active, is_superuser) '
                    "VALUES (:admin, 'x', false, false), (:user, 'y', true, false)"
                ),
                {"admin": DEMO_ADMIN[0], "user": DEMO_USER[0]},
            )
    finally:
        await engine.dispose()
    seeded = await invoke(database_url, "seed")
    assert seeded.exit_code == 0, seeded.output
    rows = await scalar(
        database_url,
        "SELECT count(*) FROM \"user\" WHERE is_superuser OR hashed_password NOT IN ('x', 'y')",
    )
    assert rows == 0
    assert await scalar(database_url, 'SELECT count(*) FROM "user" WHERE is_active') == 1
    assert await scalar(database_url, "SELECT count(*) FROM credit_ledger") == 0


@pytest.mark.parametrize("environment", ["test", "staging", "production"])
async def test_seed_refuses_outside_development_unless_forced(
    database_url: str, environment: str
) -> None:
    assert (await invoke(database_url, "migrate")).exit_code == 0
    settings = {"ENVIRONMENT": environment, "SECRET_KEY": "s" * 40}
    refused = await invoke(database_url, "seed", **settings)
    assert refused.exit_code == 1
    assert refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert f"ENVIRONMENT={environment}" in line and "--force" in line
    assert await scalar(database_url, 'SELECT count(*) FROM "user"') == 0
    forced = await invoke(database_url, "seed", "--force", **settings)
    assert forced.exit_code == 0, forced.output
    assert await scalar(database_url, 'SELECT count(*) FROM "user"') == 2


async def test_create_admin_creates_an_admin_who_can_log_in(
    database_url: str, make_app: AppFactory
) -> None:
    assert (await invoke(database_url, "migrate")).exit_code == 0
    result = await invoke(
        database_url, "create-admin", "--email", "Boss@Example.com", "--password", "boss-password-1"
    )
    assert result.exit_code == 0, result.output
    assert "created admin boss@example.com" in result.output
    assert "boss-password-1" not in result.output
    assert await scalar(
        database_url, "SELECT is_superuser FROM \"user\" WHERE email = 'boss@example.com'"
    ) in (1, True)
    response = await login(make_app, database_url, "boss@example.com", "boss-password-1")
    assert response.status_code == 200, response.text


async def test_create_admin_promotes_an_existing_user_and_sets_the_password(
    database_url: str, make_app: AppFactory
) -> None:
    assert (await invoke(database_url, "migrate")).exit_code == 0
    assert (await invoke(database_url, "seed")).exit_code == 0
    result = await invoke(
        database_url, "create-admin", "--email", DEMO_USER[0], "--password", "new-password-1"
    )
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "new-password-1" not in result.output
    assert await scalar(database_url, 'SELECT count(*) FROM "user" WHERE is_superuser') == 2
    # Its sessions ended: tokens issued before carry an older token version.
    version = "SELECT token_version FROM \"user\" WHERE email = 'user@example.com'"
    assert DEMO_USER[0] == "user@example.com"
    assert await scalar(database_url, version) == 1
    assert (await login(make_app, database_url, DEMO_USER[0], "new-password-1")).status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["--email", "a@example.com", "--password", "short"],
        ["--email", "a@example.com", "--password", "p" * 129],
        ["--email", "not-an-email", "--password", "long-enough-1"],
        ["--email", "a@example.com"],  # a missing option is an error, never a prompt
        ["--password", "long-enough-1"],
        [],
    ],
)
async def test_create_admin_with_bad_or_missing_input_fails_without_prompting(
    database_url: str, args: list[str]
) -> None:
    assert (await invoke(database_url, "migrate")).exit_code == 0
    result = await invoke(database_url, "create-admin", *args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert await scalar(database_url, 'SELECT count(*) FROM "user"') == 0


async def test_serve_offers_host_port_and_workers(database_url: str) -> None:
    result = await invoke(database_url, "serve", "--help")
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers"):
        assert option in result.output


async def test_the_command_lists_its_subcommands(database_url: str) -> None:
    result = await invoke(database_url, "--help")
    assert result.exit_code == 0
    for command in ("serve", "migrate", "seed", "create-admin"):
        assert command in result.output


@pytest.mark.parametrize("command", ["worker", "beat"])
async def test_worker_and_beat_need_a_broker(database_url: str, command: str) -> None:
    result = await invoke(database_url, command)
    assert result.exit_code == 2
    assert "CELERY_BROKER_URL is not set" in result.output
