"""The `sellerdesk` command: serve, migrate, seed, create-admin, worker, beat, check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from sellerdesk.config import Settings, get_settings
from sellerdesk.kit.logging import configure_logging

app = typer.Typer(
    help="sellerdesk: a store and a credit-metered Amazon data API.", no_args_is_help=True
)
T = TypeVar("T")


def _with_session(work: Callable[..., Awaitable[T]]) -> T:
    from sellerdesk.db import commit, create_engine, create_sessionmaker
    from sellerdesk.jobs import register_event_handlers

    settings = get_settings()
    register_event_handlers()  # events published here wait for the API's or a worker's sweep

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

    settings = get_settings()
    uvicorn.run(
        "sellerdesk.main:app",
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        access_log=False,
        proxy_headers=True,
        log_level=settings.LOG_LEVEL.lower(),
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


Pool = Literal["solo", "threads", "prefork"]


@app.command()
def worker(
    pool: Annotated[Pool, typer.Option(help="Celery pool: solo, threads or prefork.")] = "threads",
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks at once (threads/prefork).")] = 4,
) -> None:
    """Run the Celery worker: outbox events (emails, provider calls) and periodic jobs."""
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    _need_broker(settings)
    from sellerdesk.worker import run_worker

    run_worker(
        settings,
        [
            f"--pool={pool}",
            f"--concurrency={1 if pool == 'solo' else concurrency}",
            f"--loglevel={settings.LOG_LEVEL}",
            # No broadcast chatter between workers: nothing here needs it.
            "--without-gossip",
            "--without-mingle",
        ],
    )


@app.command()
def beat(
    schedule_file: Annotated[
        Path, typer.Option(help="Where beat keeps the time of each job's last send.")
    ] = Path("celerybeat-schedule"),
) -> None:
    """Run Celery beat: sends the periodic jobs (sweep the outbox, expire unpaid orders,
    reconcile payments, purge) to the workers. Run exactly one."""
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    _need_broker(settings)
    from sellerdesk.worker import create_celery

    celery = create_celery(settings)
    celery.start(["beat", f"--schedule={schedule_file}", f"--loglevel={settings.LOG_LEVEL}"])


def _need_broker(settings: Settings) -> None:
    if not settings.broker_url:
        typer.echo("CELERY_BROKER_URL is not set: jobs run inside the API process.", err=True)
        raise typer.Exit(code=2)


@app.command()
def check(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document instead of lines.")
    ] = False,
) -> None:
    """Audit the database's invariants (stock, orders, credits, payments).

    One line per violation and a summary; exit 1 when there is any, 0 when there is none, 2
    when the database cannot be read.
    """
    import json

    from sellerdesk.audit import audit
    from sellerdesk.db import create_engine
    from sellerdesk.errors import is_database_outage

    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)

    async def run() -> Any:
        engine = create_engine(settings)
        try:
            return await audit(
                engine,
                sweep_after_seconds=settings.CREDITS_SWEEP_AFTER_SECONDS,
                refund_settle_after_seconds=settings.REFUND_SETTLE_AFTER_SECONDS,
            )
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except Exception as exc:
        if not is_database_outage(exc):
            raise
        typer.echo(f"sellerdesk check: cannot read the database: {type(exc).__name__}", err=True)
        raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        for violation in report.violations:
            typer.echo(violation.line())
        typer.echo(report.summary())
    raise typer.Exit(code=0 if report.ok else 1)
