"""The in-process scheduler: periodic jobs as asyncio tasks started and stopped with the app.

Each job is a plain async function taking a sessionmaker (and what else it needs), so the Celery
issue can call the same functions from beat. Off with `JOBS_ENABLED=false` (tests call the jobs
directly). With several processes every one runs the jobs; each job is safe to run twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from fastapi import FastAPI

from sellerdesk.kit.idempotency import purge_expired_keys
from sellerdesk.orders.service import expire_unpaid_orders
from sellerdesk.payments.service import reconcile_pending_payments

log = structlog.get_logger(__name__)

Job = Callable[[FastAPI], Awaitable[object]]


async def _expire_orders(app: FastAPI) -> object:
    return await expire_unpaid_orders(app.state.sessionmaker, app.state.settings, app.state.cache)


async def _purge_idempotency_keys(app: FastAPI) -> object:
    return await purge_expired_keys(app.state.sessionmaker)


async def _reconcile_payments(app: FastAPI) -> object:
    minutes = app.state.settings.PAYMENT_RECONCILE_AFTER_MINUTES
    return await reconcile_pending_payments(
        app.state.sessionmaker, app.state.payments, older_than=timedelta(minutes=minutes)
    )


JOBS: dict[str, Job] = {
    "expire_unpaid_orders": _expire_orders,
    "purge_idempotency_keys": _purge_idempotency_keys,
    "reconcile_payments": _reconcile_payments,
}


async def _loop(app: FastAPI, interval: float) -> None:
    while True:
        for name, job in JOBS.items():
            try:
                await job(app)
            except Exception:
                log.exception("job_failed", job=name)
        await asyncio.sleep(interval)


def start(app: FastAPI) -> None:
    """Start the periodic jobs when `JOBS_ENABLED`."""
    settings = app.state.settings
    app.state.jobs_task = None
    if not settings.JOBS_ENABLED:
        return
    app.state.jobs_task = asyncio.create_task(
        _loop(app, settings.JOBS_INTERVAL_SECONDS), name="sellerdesk-jobs"
    )


async def stop(app: FastAPI) -> None:
    """Cancel the jobs task and wait for it to end."""
    task: asyncio.Task[None] | None = getattr(app.state, "jobs_task", None)
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    app.state.jobs_task = None
