"""The `sellerdesk` command: serve, migrate, seed, create-admin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from sellerdesk.config import get_settings
from sellerdesk.kit.logging import configure_logging

app = typer.Typer(
    help="sellerdesk: a store and a credit-metered Amazon data API.", no_args_is_help=True
)
T = TypeVar("T")


def _with_session(work: Callable[..., Awaitable[T]]) -> T:
    from sellerdesk.db import commit, create_engine, create_sessionmaker

    settings = get_settings()

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                result = await work(session, settings)
                await commit(session)
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
) -> None:
    """Serve the API with uvicorn."""
    import uvicorn

    from sellerdesk.kit.metrics import clear_multiprocess_dir

    settings = get_settings()
    clear_multiprocess_dir()  # PROMETHEUS_MULTIPROC_DIR: no stale values from the last run
    uvicorn.run(
        "sellerdesk.main:app",
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        access_log=False,
        proxy_headers=True,
        log_level=settings.LOG_LEVEL.lower(),
        timeout_graceful_shutdown=settings.GRACEFUL_SHUTDOWN_SECONDS,
    )


@app.command()
def migrate() -> None:
    """Apply every pending database migration."""
    from sellerdesk.migrate import upgrade

    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    upgrade(settings.DATABASE_URL)
    typer.echo("database is up to date")


@app.command()
def seed() -> None:
    """Load demo data (idempotent): an admin, a user and a demo catalog."""
    from sellerdesk.seed import DEMO_ADMIN, DEMO_USER
    from sellerdesk.seed import seed as run_seed

    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    _with_session(run_seed)
    typer.echo(f"demo admin: {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}")
    typer.echo(f"demo user:  {DEMO_USER[0]} / {DEMO_USER[1]}")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's email.")],
    password: Annotated[str, typer.Option(help="8 to 128 characters.")],
) -> None:
    """Create an administrator, or promote an existing user (never prompts)."""
    from pydantic import ValidationError

    from sellerdesk.auth.passwords import Passwords
    from sellerdesk.seed import ensure_user
    from sellerdesk.users.schemas import UserCreate

    try:
        data = UserCreate(email=email, password=password)
    except ValidationError as exc:
        typer.echo(f"invalid input: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(code=2) from exc

    async def work(session, settings):  # type: ignore[no-untyped-def]
        return await ensure_user(
            session, Passwords(settings), data.email, data.password, superuser=True
        )

    user, created = _with_session(work)
    typer.echo(f"{'created' if created else 'promoted'} admin {user.email} (id {user.id})")
