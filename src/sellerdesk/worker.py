"""Celery, used only when CELERY_BROKER_URL is set: the worker runs outbox events and periodic
jobs, beat sends the periodic jobs on `jobs.SCHEDULE`.

Tasks are thin sync wrappers around the same async functions the in-process mode runs. Each
worker process has one event loop, in a daemon thread started on the first task (after a fork,
so prefork children get their own); the engine, the payment provider and the event wiring are
created lazily in that loop. A task submits its coroutine there and waits, so the `solo`,
`threads` and `prefork` pools all work.

Delivery: JSON only; `acks_late` + `reject_on_worker_lost`, so a task lost with its worker is
delivered again once the broker's visibility timeout (CELERY_VISIBILITY_TIMEOUT_SECONDS) has
passed; time limits and retry countdowns stay below it, so no task is delivered twice while it
is still running. Retries (with backoff) only for transient errors: a database or broker that
went away. Handler failures are the outbox's business (`outbox.process` records them and the
sweep retries them), and the outbox claim makes a duplicate delivery a no-op.

Nothing here is imported by the API unless a broker is configured.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from celery import Celery
from celery.signals import worker_shutdown
from redis.asyncio import Redis
from sqlalchemy.exc import InterfaceError, OperationalError

from sellerdesk import jobs, outbox
from sellerdesk.config import Settings
from sellerdesk.db import create_engine, create_sessionmaker
from sellerdesk.events import DISPATCHER_KEY
from sellerdesk.jobs import Runtime
from sellerdesk.kit.cache import create_cache
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import create_provider

log = structlog.get_logger(__name__)

T = TypeVar("T")

TASK_PROCESS_EVENT = "sellerdesk.outbox.process_event"
TASK_RUN_JOB = "sellerdesk.jobs.run"
QUEUE = "sellerdesk"
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


def create_celery(settings: Settings) -> Celery:
    """The Celery app for `settings` (its broker, delivery rules, tasks and beat schedule)."""
    if not settings.broker_url:
        raise ValueError("Celery needs CELERY_BROKER_URL")
    app = Celery("sellerdesk", broker=settings.broker_url, set_as_current=False)
    visibility = settings.CELERY_VISIBILITY_TIMEOUT_SECONDS
    limit = settings.JOB_TIME_LIMIT_SECONDS
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_time_limit=limit,
        task_soft_time_limit=max(1, limit - 1),
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A publish to a broker that is down gives up quickly: the outbox sweep sends it later.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        broker_transport_options={
            "visibility_timeout": visibility,
            # Look for unacknowledged tasks of dead workers often enough that one comes back
            # within the visibility timeout plus a few seconds.
            "unacked_restore_interval": max(1, min(10, visibility // 10)),
            "unacked_restore_throttle": 1,
            # Every key of this deployment under its prefix (several share one Redis).
            "global_keyprefix": f"{settings.REDIS_KEY_PREFIX}:celery:",
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
        },
        beat_schedule={
            job.name: {
                "task": TASK_RUN_JOB,
                "schedule": float(job.every_seconds),
                "args": [job.name],
                # A run nobody picked up before the next one is due is dropped, not queued.
                "options": {"expires": float(job.every_seconds)},
            }
            for job in jobs.SCHEDULE
        },
    )
    loop = WorkerLoop(settings, app)

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_PROCESS_EVENT,
        autoretry_for=TRANSIENT,
        retry_backoff=2,
        retry_backoff_max=min(60, visibility // 4),
        retry_jitter=True,
        max_retries=5,
    )
    def process_event(event_id: int) -> str:
        """Run one committed event's outbox handlers."""
        return loop.run(lambda rt: outbox.process(rt.outbox, event_id))

    @app.task(name=TASK_RUN_JOB)  # type: ignore[untyped-decorator]
    def run_job(name: str) -> str:
        """Run one periodic job (under its lease; skipped while another runner holds it)."""
        job = jobs.JOBS.get(name)
        if job is None:
            log.error("job_unknown", job=name)
            return "unknown"
        owner = jobs.lease_owner()
        return loop.run(lambda rt: jobs.run_periodic(rt, job, owner=owner, respect_interval=False))

    app.sellerdesk_loop = loop
    return app


def run_worker(settings: Settings, argv: list[str]) -> None:
    """Start a worker (`celery worker` arguments) that closes its runtime when it stops."""
    app = create_celery(settings)
    loop: WorkerLoop = app.sellerdesk_loop

    def close_loop(**_: Any) -> None:
        loop.close()

    worker_shutdown.connect(close_loop, weak=False)
    app.worker_main(["worker", *argv])


class CeleryDispatcher:
    """Sends committed event ids to the worker. The publish runs in a thread (kombu blocks) in a
    task of its own, so a request's response never waits on the broker; a failed publish is
    logged and left to the outbox sweep."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._tasks: set[asyncio.Task[None]] = set()

    async def dispatch(self, event_ids: Sequence[int]) -> None:
        if not event_ids:
            return
        task = asyncio.create_task(asyncio.to_thread(self._send, list(event_ids)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, event_ids: list[int]) -> None:
        for event_id in event_ids:
            try:
                self._app.send_task(TASK_PROCESS_EVENT, args=[event_id], queue=QUEUE)
            except Exception as exc:
                log.warning("outbox_dispatch_failed", event_id=event_id, error=type(exc).__name__)

    async def drain(self, within: float | None = None) -> bool:
        """Wait for the publishes in flight; False on timeout."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=within)
            return not pending
        return True

    async def close(self, within: float) -> None:
        await self.drain(within)


class WorkerLoop:
    """This process's event loop (a daemon thread) and the runtime created inside it."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self._settings = settings
        self._app = app
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runtime: Runtime | None = None
        self._redis: Redis | None = None

    def run(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        """Run `work(runtime)` on this process's loop and wait for it (cut off at the limit)."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._call(work), loop)
        try:
            return future.result(timeout=self._settings.JOB_TIME_LIMIT_SECONDS + 5)
        except TimeoutError:
            future.cancel()
            raise

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="sellerdesk-loop")
                thread.daemon = True
                thread.start()
                self._loop, self._pid, self._runtime = loop, os.getpid(), None
            return self._loop

    async def _call(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        async with asyncio.timeout(self._settings.JOB_TIME_LIMIT_SECONDS):
            return await work(await self._get_runtime())

    async def _get_runtime(self) -> Runtime:
        if self._runtime is None:
            settings = self._settings
            jobs.register_event_handlers()
            engine = create_engine(settings)
            sessionmaker = create_sessionmaker(engine)
            dispatcher = CeleryDispatcher(self._app)
            sessionmaker.configure(info={DISPATCHER_KEY: dispatcher})
            if settings.REDIS_URL:
                self._redis = Redis.from_url(
                    settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
                )
            payments = create_provider(settings)
            payments_service.register_provider(engine, payments)
            self._runtime = Runtime(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker,
                cache=create_cache(self._redis, settings.REDIS_KEY_PREFIX),
                payments=payments,
                dispatcher=dispatcher,
            )
            log.info("worker_runtime_ready", database=engine.dialect.name)
        return self._runtime

    def close(self) -> None:
        """Close the runtime (engine, provider, Redis) and stop the loop, best effort."""
        loop, runtime = self._loop, self._runtime
        if loop is None or self._pid != os.getpid():
            return

        async def shutdown() -> None:
            if runtime is not None:
                if isinstance(runtime.dispatcher, CeleryDispatcher):
                    await runtime.dispatcher.close(5)
                await runtime.payments.close()
                await runtime.engine.dispose()
            if self._redis is not None:
                await self._redis.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        except Exception:
            log.warning("worker_shutdown_incomplete")
        loop.call_soon_threadsafe(loop.stop)
        self._loop, self._runtime = None, None
