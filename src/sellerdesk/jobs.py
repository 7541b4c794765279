"""Periodic jobs, what they run with, and the wiring of event handlers (composition root).

`SCHEDULE` is the one table of periodic jobs. Each job is a plain async function of a
`Runtime`; Celery beat (`sellerdesk beat`, with CELERY_BROKER_URL) and the in-process scheduler
(without a broker) run the same functions through `run_periodic`, which takes a lease row per
job in `job_run` with one conditional UPDATE: with many API processes or a second beat, a job
still runs in one place at a time, and the row keeps its last run for `GET /admin/jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sellerdesk import admin_stats, notifications, outbox
from sellerdesk.auth import sessions as browser_sessions
from sellerdesk.config import Settings
from sellerdesk.credits import handlers as credits_handlers
from sellerdesk.credits import service as credits_service
from sellerdesk.db import insert_for
from sellerdesk.events import Dispatcher, OutboxContext
from sellerdesk.kit.cache import Cache
from sellerdesk.kit.idempotency import purge_expired_keys
from sellerdesk.models import JobRun
from sellerdesk.models.base import utcnow
from sellerdesk.orders import handlers as orders_handlers
from sellerdesk.orders import service as orders_service
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import PaymentProvider

log = structlog.get_logger(__name__)

ERROR_TEXT_LIMIT = 2000


def register_event_handlers() -> None:
    """Subscribe every domain to the events it reacts to (idempotent; the composition root —
    `main.create_app`, the Celery worker — calls it)."""
    orders_handlers.register()
    credits_handlers.register()
    notifications.register()
    admin_stats.register()


@dataclass(frozen=True, slots=True)
class Runtime:
    """What jobs and outbox handlers run with, in an API process or a Celery worker."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: Cache
    payments: PaymentProvider
    dispatcher: Dispatcher

    @property
    def outbox(self) -> OutboxContext:
        return OutboxContext(self.sessionmaker, self.settings)


# --------------------------------------------------------------------------- the jobs


async def expire_unpaid_orders(rt: Runtime) -> int:
    return await orders_service.expire_unpaid_orders(rt.sessionmaker, rt.settings, rt.cache)


async def reconcile_payments(rt: Runtime) -> int:
    return await payments_service.reconcile_pending_payments(
        rt.sessionmaker,
        rt.payments,
        older_than=timedelta(minutes=rt.settings.PAYMENT_RECONCILE_AFTER_MINUTES),
    )


async def settle_pending_refunds(rt: Runtime) -> int:
    """Settle refunds left pending by a crash or a lost answer, asking the provider."""
    return await payments_service.settle_pending_refunds(
        rt.sessionmaker,
        rt.payments,
        older_than=timedelta(seconds=rt.settings.REFUND_SETTLE_AFTER_SECONDS),
    )


async def purge_expired(rt: Runtime) -> int:
    """Idempotency keys past 24 h, repeat-window markers past the window, old done events,
    expired dashboard sessions."""
    keys = await purge_expired_keys(rt.sessionmaker) + await browser_sessions.purge_expired(
        rt.sessionmaker
    )
    lookups = await credits_service.purge_paid_lookups(
        rt.sessionmaker, rt.settings.CREDITS_REPEAT_WINDOW
    )
    return keys + lookups + await outbox.purge_done(rt.outbox)


async def sweep_outbox(rt: Runtime) -> int:
    """Dispatch again what a lost dispatch, a dead processor or a retry left pending."""
    ids = await outbox.due_event_ids(rt.outbox)
    if ids:
        log.info("outbox_swept", count=len(ids))
        await rt.dispatcher.dispatch(ids)
    return len(ids)


async def roll_up_stats(rt: Runtime) -> int:
    """Roll up the admin stats of days that have closed (a year reads as a row a day)."""
    return await admin_stats.roll_up_stats(rt.sessionmaker, rt.settings.CURRENCY)


async def sweep_unsettled_charges(rt: Runtime) -> int:
    """Refund paid calls' charges left without an outcome (a cancelled or crashed call)."""
    return await credits_service.sweep_unsettled_charges(rt.sessionmaker, rt.settings)


Job = Callable[[Runtime], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    run: Job
    every_seconds: int


# The schedule, for beat and the in-process scheduler alike. Add a job here and nowhere else.
SCHEDULE: tuple[PeriodicJob, ...] = (
    PeriodicJob("sweep_outbox", sweep_outbox, 30),
    PeriodicJob("expire_unpaid_orders", expire_unpaid_orders, 60),
    PeriodicJob("reconcile_payments", reconcile_payments, 120),
    PeriodicJob("settle_pending_refunds", settle_pending_refunds, 60),
    PeriodicJob("sweep_unsettled_charges", sweep_unsettled_charges, 60),
    PeriodicJob("purge_expired", purge_expired, 3600),
    PeriodicJob("roll_up_stats", roll_up_stats, 900),
)
JOBS = {job.name: job for job in SCHEDULE}


# --------------------------------------------------------------------------- leases


def lease_owner() -> str:
    """Who holds a lease: host, process and a random tag (one per scheduler or worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_periodic(rt: Runtime, job: PeriodicJob, *, owner: str, respect_interval: bool) -> str:
    """Run `job` if its lease is free (and, with `respect_interval`, its last start is at least
    `every_seconds` old): "ran", "failed" or "skipped". The lease lasts JOB_TIME_LIMIT_SECONDS,
    the run is cut off at that limit, so a dead runner's lease simply expires."""
    if not await _take_lease(rt, job, owner=owner, respect_interval=respect_interval):
        return "skipped"
    status: str = "cancelled"
    error: str | None = "stopped before it finished"
    try:
        async with asyncio.timeout(rt.settings.JOB_TIME_LIMIT_SECONDS):
            result = await job.run(rt)
        status, error = "ok", None
        # A run that found nothing to do is routine: it stays out of an INFO log.
        (log.info if result else log.debug)("job_ran", job=job.name, result=result)
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        log.exception("job_failed", job=job.name)
    finally:
        # Also when cancelled (shutdown): the lease is freed for the next runner at once.
        await _release_lease(rt, job, owner=owner, status=status, error=error)
    return "ran" if status == "ok" else "failed"


async def _take_lease(rt: Runtime, job: PeriodicJob, *, owner: str, respect_interval: bool) -> bool:
    now = utcnow()
    async with rt.sessionmaker() as session:
        insert: object = insert_for(session, JobRun).values(name=job.name)
        await session.execute(insert.on_conflict_do_nothing())  # type: ignore[attr-defined]
        conditions = [
            JobRun.name == job.name,
            or_(JobRun.lease_expires_at.is_(None), JobRun.lease_expires_at <= now),
        ]
        if respect_interval:
            conditions.append(
                or_(
                    JobRun.last_started_at.is_(None),
                    JobRun.last_started_at <= now - timedelta(seconds=job.every_seconds),
                )
            )
        taken = await session.scalar(
            update(JobRun)
            .where(*conditions)
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=rt.settings.JOB_TIME_LIMIT_SECONDS),
                last_started_at=now,
                last_status="running",
            )
            .returning(JobRun.name)
        )
        await session.commit()
    return taken is not None


async def _release_lease(
    rt: Runtime, job: PeriodicJob, *, owner: str, status: str, error: str | None
) -> None:
    async with rt.sessionmaker() as session:
        await session.execute(
            update(JobRun)
            .where(JobRun.name == job.name, JobRun.lease_owner == owner)
            .values(
                lease_owner=None,
                lease_expires_at=None,
                last_finished_at=utcnow(),
                last_status=status,
                last_error=error,
            )
        )
        await session.commit()


async def last_runs(session: AsyncSession) -> dict[str, JobRun]:
    """Each periodic job's row (lease and last run), by name."""
    rows = await session.scalars(select(JobRun))
    return {row.name: row for row in rows}


# --------------------------------------------------------------------------- in-process scheduler


class Scheduler:
    """Without a broker: every JOBS_INTERVAL_SECONDS, run the jobs that are due, each under its
    lease, so with several API processes each job still runs in one of them at a time."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._owner = lease_owner()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sellerdesk-jobs")

    async def run_due(self) -> dict[str, str]:
        """One pass over the schedule: what each job did."""
        return {
            job.name: await run_periodic(self._rt, job, owner=self._owner, respect_interval=True)
            for job in SCHEDULE
        }

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:
                log.exception("scheduler_pass_failed")
            await asyncio.sleep(self._rt.settings.JOBS_INTERVAL_SECONDS)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
