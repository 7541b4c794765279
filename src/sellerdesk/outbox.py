"""Running the outbox: each committed event's outbox handlers, once each, with retries.

`process(ctx, event_id)` is what a Celery task or an in-process task runs for one event:

1. claim it with one conditional UPDATE (`pending`, next try due) that counts the attempt and
   pushes `available_at` ahead by the time limit: a second processor (a redelivered task, the
   sweep) finds nothing to claim while this one works, and takes over once the lease ran out;
2. run every handler not yet recorded in `event_handled` for this event, each in its own try,
   recording it once it succeeded (so a retry only runs what failed);
3. mark the event `done`, or schedule the next try with exponential backoff (transient errors),
   or mark it `failed` (a permanent error, or `OUTBOX_MAX_ATTEMPTS` spent): visible to admins.

A handler's effect and its done-record are not one transaction (an email cannot be rolled back),
so a crash in between runs that handler again: handlers are idempotent themselves (an email has
a deterministic Message-ID and its own done-record per recipient; a provider call carries a
deterministic idempotency key; database effects are conditional statements).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.db import insert_for
from sellerdesk.events import Event, OutboxContext, is_transient, outbox_handlers
from sellerdesk.models import DomainEvent, EventHandled
from sellerdesk.models.base import utcnow

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 3600
SWEEP_BATCH = 500
ERROR_TEXT_LIMIT = 2000


# --------------------------------------------------------------------------- one event


async def process(ctx: OutboxContext, event_id: int) -> str:
    """Run the outbox handlers of one event; "done", "retry", "failed" or "skipped" (not
    pending, not due yet, or being processed elsewhere)."""
    settings = ctx.settings
    limit = settings.JOB_TIME_LIMIT_SECONDS
    claimed = await _claim(ctx, event_id, lease=timedelta(seconds=limit))
    if claimed is None:
        return "skipped"
    event, attempts = claimed
    loop = asyncio.get_running_loop()
    # Finish before the lease ends (90% of it), so no second processor starts meanwhile.
    deadline = loop.time() + limit * 0.9
    done = await _handled(ctx, event.id)
    errors: list[tuple[str, BaseException]] = []
    for name, handler in outbox_handlers(event.kind).items():
        if name in done:
            continue
        try:
            async with asyncio.timeout_at(deadline):
                await handler(ctx, event)
        except Exception as exc:
            log.warning(
                "outbox_handler_failed",
                event_id=event.id,
                kind=event.kind,
                handler=name,
                error=type(exc).__name__,
                transient=is_transient(exc),
                exc_info=not is_transient(exc),
            )
            errors.append((name, exc))
            continue
        await mark_handled(ctx, event.id, name)
    return await _finish(ctx, event, attempts, errors)


async def _claim(
    ctx: OutboxContext, event_id: int, *, lease: timedelta
) -> tuple[Event, int] | None:
    now = utcnow()
    async with ctx.sessionmaker() as session:
        row = (
            await session.execute(
                update(DomainEvent)
                .where(
                    DomainEvent.id == event_id,
                    DomainEvent.status == "pending",
                    DomainEvent.available_at <= now,
                )
                .values(attempts=DomainEvent.attempts + 1, available_at=now + lease)
                .returning(DomainEvent.kind, DomainEvent.payload, DomainEvent.attempts)
            )
        ).one_or_none()
        await session.commit()
    if row is None:
        return None
    return Event(event_id, row.kind, dict(row.payload)), int(row.attempts)


async def _handled(ctx: OutboxContext, event_id: int) -> set[str]:
    async with ctx.sessionmaker() as session:
        names = await session.scalars(
            select(EventHandled.handler).where(EventHandled.event_id == event_id)
        )
        result = set(names)
        await session.commit()
    return result


async def mark_handled(ctx: OutboxContext, event_id: int, key: str) -> bool:
    """Record that `key` (a handler, or one effect of it) is done for the event; False when it
    already was."""
    async with ctx.sessionmaker() as session:
        stmt: Any = insert_for(session, EventHandled).values(
            event_id=event_id, handler=key, handled_at=utcnow()
        )
        inserted = (
            await session.execute(stmt.on_conflict_do_nothing().returning(EventHandled.handler))
        ).scalar_one_or_none()
        await session.commit()
    return inserted is not None


async def once(
    ctx: OutboxContext, event: Event, key: str, effect: Callable[[], Awaitable[None]]
) -> bool:
    """Run `effect` unless `key` is already recorded for this event, then record it: one effect
    of a handler that has several (one email per recipient). True when it ran."""
    async with ctx.sessionmaker() as session:
        seen = await session.scalar(
            select(EventHandled.handler).where(
                EventHandled.event_id == event.id, EventHandled.handler == key
            )
        )
        await session.commit()
    if seen is not None:
        return False
    await effect()
    await mark_handled(ctx, event.id, key)
    return True


async def _finish(
    ctx: OutboxContext, event: Event, attempts: int, errors: list[tuple[str, BaseException]]
) -> str:
    settings = ctx.settings
    now = utcnow()
    values: dict[str, Any]
    if not errors:
        outcome = "done"
        values = {"status": "done", "processed_at": now, "last_error": None}
    else:
        message = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in errors)
        retryable = any(is_transient(exc) for _, exc in errors)
        if retryable and attempts < settings.OUTBOX_MAX_ATTEMPTS:
            outcome = "retry"
            wait = min(settings.OUTBOX_RETRY_SECONDS * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            values = {"available_at": now + timedelta(seconds=wait)}
        else:
            outcome = "failed"
            values = {"status": "failed", "processed_at": now}
        values["last_error"] = message[:ERROR_TEXT_LIMIT]
    async with ctx.sessionmaker() as session:
        await session.execute(
            update(DomainEvent)
            .where(DomainEvent.id == event.id, DomainEvent.status == "pending")
            .values(**values)
        )
        await session.commit()
    level = log.error if outcome == "failed" else log.info
    level("outbox_event_" + outcome, event_id=event.id, kind=event.kind, attempts=attempts)
    return outcome


# --------------------------------------------------------------------------- periodic work


async def due_event_ids(ctx: OutboxContext, limit: int = SWEEP_BATCH) -> list[int]:
    """Pending events to dispatch again: never tried and older than OUTBOX_SWEEP_AFTER_SECONDS
    (their dispatch was lost), or tried and due for their next try (a retry, or a processor
    that died holding the lease)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=ctx.settings.OUTBOX_SWEEP_AFTER_SECONDS)
    async with ctx.sessionmaker() as session:
        ids = await session.scalars(
            select(DomainEvent.id)
            .where(
                DomainEvent.status == "pending",
                DomainEvent.available_at <= now,
                (DomainEvent.attempts > 0) | (DomainEvent.created_at <= cutoff),
            )
            .order_by(DomainEvent.id)
            .limit(limit)
        )
        result = list(ids)
        await session.commit()
    return result


async def purge_done(ctx: OutboxContext) -> int:
    """Delete events done longer ago than OUTBOX_RETENTION_DAYS (their done-records go too)."""
    cutoff = utcnow() - timedelta(days=ctx.settings.OUTBOX_RETENTION_DAYS)
    async with ctx.sessionmaker() as session:
        old = select(DomainEvent.id).where(
            DomainEvent.status == "done", DomainEvent.processed_at < cutoff
        )
        await session.execute(delete(EventHandled).where(EventHandled.event_id.in_(old)))
        result = await session.execute(
            delete(DomainEvent)
            .where(DomainEvent.status == "done", DomainEvent.processed_at < cutoff)
            .returning(DomainEvent.id)
        )
        purged = len(result.all())
        await session.commit()
    if purged:
        log.info("outbox_events_purged", count=purged)
    return purged


@dataclass(frozen=True, slots=True)
class KindCount:
    kind: str
    pending: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailedEvent:
    id: int
    kind: str
    attempts: int
    last_error: str | None
    created_at: datetime


async def counts(session: AsyncSession) -> list[KindCount]:
    """Pending and failed events per kind (kinds with neither are left out)."""
    rows = await session.execute(
        select(DomainEvent.kind, DomainEvent.status, func.count())
        .where(DomainEvent.status.in_(("pending", "failed")))
        .group_by(DomainEvent.kind, DomainEvent.status)
    )
    by_kind: dict[str, dict[str, int]] = {}
    for kind, status, count in rows:
        by_kind.setdefault(kind, {"pending": 0, "failed": 0})[status] = int(count)
    return [KindCount(k, v["pending"], v["failed"]) for k, v in sorted(by_kind.items())]


async def recent_failures(session: AsyncSession, limit: int = 20) -> list[FailedEvent]:
    """The newest failed events, with their last error."""
    rows = await session.scalars(
        select(DomainEvent)
        .where(DomainEvent.status == "failed")
        .order_by(DomainEvent.id.desc())
        .limit(limit)
    )
    return [FailedEvent(r.id, r.kind, r.attempts, r.last_error, r.created_at) for r in rows]


# --------------------------------------------------------------------------- in-process mode


class InProcessDispatcher:
    """Without a broker: each dispatched event runs as an asyncio task of this process, after
    the response; the tasks are held here (not garbage-collected mid-run) and drained on
    shutdown. What a shutdown cuts short stays `pending` for the sweep."""

    def __init__(self, ctx: OutboxContext) -> None:
        self._ctx = ctx
        self._tasks: set[asyncio.Task[None]] = set()

    async def dispatch(self, event_ids: Sequence[int]) -> None:
        for event_id in event_ids:
            task = asyncio.create_task(self._run(event_id), name=f"outbox-event-{event_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, event_id: int) -> None:
        try:
            await process(self._ctx, event_id)
        except Exception:
            log.exception("outbox_process_failed", event_id=event_id)

    async def drain(self, within: float | None = None) -> bool:
        """Wait for every running event (and those they dispatch); False on timeout."""
        loop = asyncio.get_running_loop()
        end = None if within is None else loop.time() + within
        while self._tasks:
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def close(self, within: float) -> None:
        """Drain for at most `within` seconds, then cancel what is left (the sweep resumes it)."""
        if await self.drain(within):
            return
        pending = list(self._tasks)
        log.warning("outbox_shutdown_cancelled", tasks=len(pending))
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
