"""Domain events: how one domain announces what happened and others react, without imports.

`publish(session, kind, payload)` writes the event's outbox row in the caller's transaction,
runs the *in-transaction* handlers registered for `kind` (same session, same transaction: state
in our own database, e.g. an order moving to `paid` when its payment succeeded), and queues the
row for dispatch after the commit. *Outbox* handlers (emails, provider calls: anything that
leaves the database) run later, outside any business transaction, from `sellerdesk.outbox`.

A rolled-back transaction leaves neither the row nor a dispatch; a crash between commit and
dispatch leaves a `pending` row that the periodic sweep dispatches again.

Domains register their handlers with `on()` from a `register()` function that the composition
root (`main.create_app`, the Celery worker) calls; registering the same handler twice is a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, overload

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk.config import Settings
from sellerdesk.db import on_commit
from sellerdesk.models import DomainEvent
from sellerdesk.models.base import utcnow

log = structlog.get_logger(__name__)

DISPATCHER_KEY = "outbox_dispatcher"  # where a session finds its dispatcher (`Session.info`)


@dataclass(frozen=True, slots=True)
class Event:
    """One published event as its handlers see it."""

    id: int
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxContext:
    """What an outbox handler runs with: its own short transactions, and the settings."""

    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings


InTransactionHandler = Callable[[AsyncSession, Event], Awaitable[None]]
OutboxHandler = Callable[[OutboxContext, Event], Awaitable[None]]


class Dispatcher(Protocol):
    """Sends committed event ids to their outbox handlers (in-process tasks or Celery)."""

    async def dispatch(self, event_ids: Sequence[int]) -> None: ...


@dataclass(slots=True)
class _Registry:
    in_transaction: dict[str, dict[str, InTransactionHandler]] = field(default_factory=dict)
    outbox: dict[str, dict[str, OutboxHandler]] = field(default_factory=dict)


_registry = _Registry()


def handler_name(handler: Callable[..., Any]) -> str:
    """A handler's stable name (`module.function`): the key of its done-record per event."""
    return f"{handler.__module__}.{handler.__qualname__}"


@overload
def on(kind: str, handler: InTransactionHandler, *, in_transaction: Literal[True]) -> None: ...
@overload
def on(kind: str, handler: OutboxHandler, *, in_transaction: Literal[False]) -> None: ...
def on(kind: str, handler: Any, *, in_transaction: bool) -> None:
    """Register `handler` for events of `kind`, in the publishing transaction or after it."""
    table: dict[str, dict[str, Any]] = (
        _registry.in_transaction if in_transaction else _registry.outbox
    )
    table.setdefault(kind, {})[handler_name(handler)] = handler


def outbox_handlers(kind: str) -> dict[str, OutboxHandler]:
    """The outbox handlers of `kind`, by name."""
    return dict(_registry.outbox.get(kind, {}))


async def publish(session: AsyncSession, kind: str, payload: dict[str, Any]) -> Event:
    """Record `kind` in the caller's transaction, run its in-transaction handlers, and dispatch
    it to its outbox handlers once the transaction commits. `payload` must be JSON (ids,
    strings; money as a two-place string)."""
    has_outbox = bool(_registry.outbox.get(kind))
    row = DomainEvent(
        kind=kind,
        payload=payload,
        status="pending" if has_outbox else "done",
        processed_at=None if has_outbox else utcnow(),
    )
    session.add(row)
    await session.flush()
    event = Event(row.id, kind, payload)
    log.info(
        "event_published",
        kind=kind,
        event_id=event.id,
        **{k: v for k, v in payload.items() if k.endswith("_id")},
    )
    for handler in list(_registry.in_transaction.get(kind, {}).values()):
        await handler(session, event)
    dispatcher: Dispatcher | None = session.info.get(DISPATCHER_KEY)
    if has_outbox and dispatcher is not None:

        async def dispatch_event() -> None:
            await dispatcher.dispatch([event.id])

        on_commit(session, dispatch_event)
    return event


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later may succeed: lost connections and timeouts, a database that went
    away, or an error that says so itself (`exc.transient`, e.g. an SMTP 4xx or provider 5xx)."""
    flag = getattr(exc, "transient", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, OperationalError | InterfaceError):
        return True  # the database went away, timed out or was locked
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError | OSError)
