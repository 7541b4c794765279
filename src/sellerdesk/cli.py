"""The `sellerdesk` command: serve, migrate, seed, create-admin, worker, beat, check.

Expected failures (invalid settings, a database that is missing or unreachable, a port in use)
end with one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from sellerdesk.config import Settings, get_settings
from sellerdesk.kit.logging import configure_logging

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

app = typer.Typer(
    help="sellerdesk: a store and a credit-metered Amazon data API.", no_args_is_help=True
)
T = TypeVar("T")

DATABASE_TIMEOUT_SECONDS = 10.0


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit with `code`."""
    typer.echo(f"sellerdesk: {message}", err=True)
    raise typer.Exit(code=code)


def load_settings() -> Settings:
    """The settings, or one line naming what is wrong with them (exit 2)."""
    try:
        return get_settings()
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        fail(f"invalid configuration: {where + ': ' if where else ''}{message}", code=2)


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.DATABASE_URL).render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    """The first line of what the driver said, without exception class names."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {DATABASE_TIMEOUT_SECONDS:.0f} s"
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"^(\(\S+\) |<class '[^']+'>: )", "", first)


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """Turn a database that cannot be used into one line (exit 1)."""
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError

    try:
        yield
    except NoSuchModuleError as exc:
        fail(f"DATABASE_URL names a driver that is not installed ({exc})")
    except (OSError, TimeoutError, DBAPIError) as exc:
        fail(f"the database at {_safe_url(settings)} cannot be used: {_reason(exc)}")


async def _migrated(settings: Settings) -> bool:
    """Connect to the database; True when it has been migrated at least once."""
    from sqlalchemy import inspect

    from sellerdesk.db import create_engine

    engine = create_engine(settings)
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS), engine.connect() as conn:
            return await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version"))
    finally:
        await engine.dispose()


def check_database(settings: Settings) -> None:
    """Refuse to serve a database that is missing, unreachable or never migrated."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.DATABASE_URL)
    sqlite_file = url.database if url.get_backend_name() == "sqlite" else None
    if sqlite_file not in (None, "", ":memory:") and not Path(str(sqlite_file)).exists():
        fail(f"the SQLite database {sqlite_file} does not exist: run `sellerdesk migrate`")
    with database_errors(settings):
        migrated = asyncio.run(_migrated(settings))
    if not migrated:
        fail(f"the database at {_safe_url(settings)} is empty: run `sellerdesk migrate`")


def check_port(host: str, port: int) -> None:
    """Refuse a port that another process listens on (what uvicorn would fail to bind)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}: {exc.strerror}")
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use: choose another with --port")
            fail(f"cannot listen on {host}:{port}: {exc.strerror}")


def _with_session(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    from sellerdesk.db import commit, create_engine, create_sessionmaker
    from sellerdesk.jobs import register_event_handlers

    settings = load_settings()
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

    with database_errors(settings):
        return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
) -> None:
    """Serve the API with uvicorn (behind a proxy, see FORWARDED_ALLOW_IPS)."""
    from sellerdesk.kit.metrics import clear_multiprocess_dir
    from sellerdesk.server import exec_server

    settings = load_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    check_database(settings)
    check_port(host, port)
    clear_multiprocess_dir()  # PROMETHEUS_MULTIPROC_DIR: no stale values from the last run
    # The same process becomes a fresh interpreter that loads only what serving needs
    # (sellerdesk.server: no typer, no rich with JSON logs, malloc tuned).
    exec_server(host, port, workers, reload)


@app.command()
def migrate() -> None:
    """Apply every pending database migration."""
    from sellerdesk.migrate import upgrade

    settings = load_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    with database_errors(settings):
        upgrade(settings.DATABASE_URL)
    typer.echo("database is up to date")


@app.command()
def seed(
    force: Annotated[bool, typer.Option(help="Seed even outside ENVIRONMENT=development.")] = False,
) -> None:
    """Load demo data (idempotent): an admin, a user and a demo catalog.

    Accounts that already exist are left as they are, passwords included.
    """
    from sellerdesk.seed import DEMO_ADMIN, DEMO_USER
    from sellerdesk.seed import seed as run_seed

    settings = load_settings()
    if settings.ENVIRONMENT != "development" and not force:
        fail(
            f"refusing to load demo data (accounts with known passwords) with "
            f"ENVIRONMENT={settings.ENVIRONMENT}; add --force to do it anyway"
        )
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    report = _with_session(run_seed)
    for (email, password), created in (
        (DEMO_ADMIN, report.admin_created),
        (DEMO_USER, report.user_created),
    ):
        kind = "admin" if email == DEMO_ADMIN[0] else "user "
        if created:
            typer.echo(f"demo {kind}: {email} / {password}")
        else:
            typer.echo(f"demo {kind}: {email} already existed; left unchanged (password too)")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's email.")],
    password: Annotated[str, typer.Option(help="8 to 128 characters.")],
) -> None:
    """Create an administrator, or promote an existing user and set their password.

    Never prompts. Promoting ends the account's sessions (its tokens stop working).
    """
    from sellerdesk.auth.passwords import Passwords
    from sellerdesk.seed import make_admin
    from sellerdesk.users.schemas import UserCreate

    try:
        data = UserCreate(email=email, password=password)
    except ValidationError as exc:
        fail(f"invalid input: {exc.errors()[0]['msg']}", code=2)

    async def work(session: AsyncSession, settings: Settings) -> tuple[str, int, bool]:
        user, created = await make_admin(session, Passwords(settings), data.email, data.password)
        return user.email, user.id, created

    admin_email, admin_id, created = _with_session(work)
    if created:
        typer.echo(f"created admin {admin_email} (id {admin_id})")
    else:
        typer.echo(f"promoted admin {admin_email} (id {admin_id}); its password was set")


Pool = Literal["solo", "threads", "prefork"]


@app.command()
def worker(
    pool: Annotated[Pool, typer.Option(help="Celery pool: solo, threads or prefork.")] = "threads",
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks at once (threads/prefork).")] = 4,
) -> None:
    """Run the Celery worker: outbox events (emails, provider calls) and periodic jobs."""
    settings = load_settings()
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
    settings = load_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    _need_broker(settings)
    from sellerdesk.worker import create_celery

    celery = create_celery(settings)
    celery.start(["beat", f"--schedule={schedule_file}", f"--loglevel={settings.LOG_LEVEL}"])


def _need_broker(settings: Settings) -> None:
    if not settings.broker_url:
        fail("CELERY_BROKER_URL is not set: jobs run inside the API process.", code=2)


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

    settings = load_settings()
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
