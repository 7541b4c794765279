"""The transactional outbox: events exist only if their transaction commits, are dispatched after
it, are swept when a dispatch was lost, and each handler's effect happens once however often
an event runs; failures are retried with backoff and end `failed`, visible to admins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from sellerdesk import events, jobs, outbox
from sellerdesk.db import SessionDep
from sellerdesk.errors import Conflict
from sellerdesk.events import Event, OutboxContext
from sellerdesk.models import DomainEvent, EventHandled, Payment, Refund
from sellerdesk.models.base import utcnow
from sellerdesk.orders import handlers as orders_handlers
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import IntentRef, ManualProvider, RefundInfo
from tests.conftest import AppFactory, is_postgres
from tests.orders_factories import make_product, make_user, place_order
from tests.smtp_sink import Sink, smtp_sink

__all__ = ["smtp_sink"]


@pytest.fixture
async def mail_app(make_app: AppFactory, smtp_sink: Sink) -> FastAPI:
    return await make_app(**smtp_sink.settings)


@pytest.fixture
async def client(mail_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=mail_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def ctx_of(app: FastAPI) -> OutboxContext:
    runtime: jobs.Runtime = app.state.runtime
    return runtime.outbox


async def rows(app: FastAPI, kind: str | None = None) -> list[DomainEvent]:
    async with app.state.sessionmaker() as session:
        stmt = select(DomainEvent).order_by(DomainEvent.id)
        if kind is not None:
            stmt = stmt.where(DomainEvent.kind == kind)
        return list(await session.scalars(stmt))


async def publish_committed_without_dispatch(app: FastAPI, kind: str, payload: Any) -> int:
    """A committed event whose dispatch was lost (as if the process died right after commit)."""
    async with app.state.sessionmaker() as session:
        event = await events.publish(session, kind, payload)
        await session.commit()  # a plain commit: the after-commit dispatch never runs
    return event.id


async def age(app: FastAPI, event_id: int, seconds: int) -> None:
    async with app.state.sessionmaker() as session:
        past = utcnow() - timedelta(seconds=seconds)
        await session.execute(
            update(DomainEvent)
            .where(DomainEvent.id == event_id)
            .values(created_at=past, available_at=past)
        )
        await session.commit()


# --------------------------------------------------------------------------- commit and dispatch


async def test_a_rolled_back_request_leaves_no_event_and_sends_nothing(
    mail_app: FastAPI, client: httpx.AsyncClient, smtp_sink: Sink
) -> None:
    buyer = await make_user(mail_app)

    @mail_app.post("/api/v1/test-outbox/publish-then-fail")
    async def publish_then_fail(session: SessionDep) -> None:
        await events.publish(session, "password_changed", {"user_id": buyer.id})
        raise Conflict("Something went wrong after the event was published.")

    response = await client.post("/api/v1/test-outbox/publish-then-fail")
    assert response.status_code == 409
    assert await mail_app.state.dispatcher.drain(10)
    assert await rows(mail_app) == []
    assert smtp_sink.messages == []


async def test_an_event_whose_dispatch_was_lost_is_swept_and_sent_once(
    mail_app: FastAPI, smtp_sink: Sink
) -> None:
    buyer = await make_user(mail_app)
    event_id = await publish_committed_without_dispatch(
        mail_app, "password_changed", {"user_id": buyer.id}
    )
    runtime = mail_app.state.runtime
    assert await jobs.sweep_outbox(runtime) == 0  # too recent: its own dispatch may still come
    await age(mail_app, event_id, mail_app.state.settings.OUTBOX_SWEEP_AFTER_SECONDS + 1)
    assert await jobs.sweep_outbox(runtime) == 1
    assert await mail_app.state.dispatcher.drain(10)
    assert await jobs.sweep_outbox(runtime) == 0
    assert len(smtp_sink.of_kind("password_changed")) == 1
    (row,) = await rows(mail_app)
    assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    assert row.processed_at is not None


async def test_events_without_outbox_handlers_are_written_done(mail_app: FastAPI) -> None:
    buyer = await make_user(mail_app)
    await publish_committed_without_dispatch(mail_app, "order_delivered", {"order_id": 1})
    await publish_committed_without_dispatch(mail_app, "password_changed", {"user_id": buyer.id})
    statuses = {row.kind: row.status for row in await rows(mail_app)}
    assert statuses == {"order_delivered": "done", "password_changed": "pending"}


# --------------------------------------------------------------------------- once and only once


async def test_an_event_dispatched_twice_sends_one_email(
    mail_app: FastAPI, smtp_sink: Sink
) -> None:
    buyer = await make_user(mail_app)
    event_id = await publish_committed_without_dispatch(
        mail_app, "password_changed", {"user_id": buyer.id}
    )
    ctx = ctx_of(mail_app)
    first, second = await asyncio.gather(
        outbox.process(ctx, event_id), outbox.process(ctx, event_id)
    )
    assert sorted([first, second]) == ["done", "skipped"]
    assert await outbox.process(ctx, event_id) == "skipped"
    # As if the processor had died after sending but before marking the event done, and its
    # lease had run out:
    async with mail_app.state.sessionmaker() as session:
        await session.execute(
            update(DomainEvent)
            .where(DomainEvent.id == event_id)
            .values(status="pending", available_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert await outbox.process(ctx, event_id) == "done"
    assert len(smtp_sink.of_kind("password_changed")) == 1


class CountingProvider(ManualProvider):
    """The manual gateway, counting the refunds asked of it and their idempotency keys."""

    def __init__(self) -> None:
        self.refund_keys: list[str] = []

    async def refund(self, ref: IntentRef, *, amount: int, idempotency_key: str) -> RefundInfo:
        self.refund_keys.append(idempotency_key)
        return await super().refund(ref, amount=amount, idempotency_key=idempotency_key)


async def test_a_payment_after_cancel_is_refunded_once_with_a_deterministic_key(
    mail_app: FastAPI, client: httpx.AsyncClient
) -> None:
    counting = CountingProvider()
    payments_service.register_provider(mail_app.state.engine, counting)
    buyer = await make_user(mail_app)
    product = await make_product(mail_app, price="15.00", stock=3)
    order = await place_order(client, buyer, product, 2)
    await client.post(
        "/api/v1/payments/create-payment-intent",
        json={"order_id": order["id"]},
        headers=buyer.headers,
    )
    cancelled = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert cancelled.json()["payment_status"] == "failed"
    assert await mail_app.state.dispatcher.drain(10)

    # The buyer's payment still goes through at the provider (e.g. a confirmation in flight):
    async with mail_app.state.sessionmaker() as session:
        payment = await payments_service.get_by_purpose(session, f"order:{order['id']}")
        assert payment is not None and payment.intent_id is not None
        info = await counting.confirm_intent(IntentRef(payment.intent_id, 3000, "usd"))
        await payments_service.apply_intent_state(session, payment, info)
        await session.commit()  # its dispatch is "lost": the handler runs below, twice
    (after_cancel,) = await rows(mail_app, "payment_succeeded_after_cancel")
    event = Event(after_cancel.id, after_cancel.kind, after_cancel.payload)
    ctx = ctx_of(mail_app)
    await orders_handlers.refund_payment_after_cancel(ctx, event)
    await orders_handlers.refund_payment_after_cancel(ctx, event)
    await outbox.process(ctx, event.id)

    async with mail_app.state.sessionmaker() as session:
        row = await session.get(Payment, payment.id)
        assert row is not None
        assert (row.status, row.refunded_amount) == ("succeeded", Decimal("30.00"))
        refunds = list(await session.scalars(select(Refund)))
        assert [(r.status, r.request_key) for r in refunds] == [
            ("succeeded", "refund_after_cancel")
        ]
    assert counting.refund_keys == [f"refund:{refunds[0].id}"]
    shown = (await client.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert (shown["status"], shown["payment_status"]) == ("cancelled", "refunded")


# --------------------------------------------------------------------------- failures


class Flaky:
    """An outbox handler that fails `times` times with `error`, then works."""

    def __init__(self, times: int, error: type[Exception]) -> None:
        self.times, self.error, self.calls = times, error, 0

    async def __call__(self, ctx: OutboxContext, event: Event) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error("the test says no")


def flaky_handler(kind: str, times: int, error: type[Exception]) -> Flaky:
    handler = Flaky(times, error)

    async def handle(ctx: OutboxContext, event: Event) -> None:
        await handler(ctx, event)

    handle.__qualname__ = f"flaky_{kind}"
    events.on(kind, handle, in_transaction=False)
    return handler


async def test_a_transient_failure_is_retried_with_backoff_then_succeeds(
    mail_app: FastAPI,
) -> None:
    handler = flaky_handler("test_transient", 2, ConnectionError)
    event_id = await publish_committed_without_dispatch(mail_app, "test_transient", {})
    ctx = ctx_of(mail_app)
    assert await outbox.process(ctx, event_id) == "retry"
    (row,) = await rows(mail_app, "test_transient")
    base = mail_app.state.settings.OUTBOX_RETRY_SECONDS
    assert row.status == "pending" and row.attempts == 1
    assert row.last_error is not None and "ConnectionError" in row.last_error
    wait = (row.available_at - utcnow()).total_seconds()
    assert base - 15 < wait <= base  # generous: a loaded machine may be slow in between
    assert await outbox.process(ctx, event_id) == "skipped"  # not due yet

    await age(mail_app, event_id, 1)
    assert await outbox.process(ctx, event_id) == "retry"
    (row,) = await rows(mail_app, "test_transient")
    assert 2 * base - 15 < (row.available_at - utcnow()).total_seconds() <= 2 * base  # doubled
    assert await outbox.due_event_ids(ctx) == []
    await age(mail_app, event_id, 1)
    assert await outbox.due_event_ids(ctx) == [event_id]
    assert await outbox.process(ctx, event_id) == "done"
    assert handler.calls == 3


async def test_a_permanent_failure_fails_at_once_and_admins_see_it(
    make_app: AppFactory, mail_app: FastAPI, client: httpx.AsyncClient
) -> None:
    flaky_handler("test_permanent", 99, ValueError)
    flaky_handler("test_exhausted", 99, TimeoutError)
    permanent = await publish_committed_without_dispatch(mail_app, "test_permanent", {})
    exhausted = await publish_committed_without_dispatch(mail_app, "test_exhausted", {})
    ctx = ctx_of(mail_app)
    assert await outbox.process(ctx, permanent) == "failed"
    for _ in range(mail_app.state.settings.OUTBOX_MAX_ATTEMPTS - 1):
        assert await outbox.process(ctx, exhausted) == "retry"
        await age(mail_app, exhausted, 1)
    assert await outbox.process(ctx, exhausted) == "failed"
    assert await outbox.process(ctx, exhausted) == "skipped"
    pending = await publish_committed_without_dispatch(mail_app, "test_exhausted", {})

    admin = await make_user(mail_app, admin=True)
    body = (await client.get("/api/v1/admin/jobs", headers=admin.headers)).json()
    assert body["mode"] == "in-process"
    assert body["outbox"]["failed"] == 2 and body["outbox"]["pending"] == 1
    assert {k["kind"]: (k["pending"], k["failed"]) for k in body["outbox"]["by_kind"]} == {
        "test_exhausted": (1, 1),
        "test_permanent": (0, 1),
    }
    failures = {f["id"]: f for f in body["outbox"]["recent_failures"]}
    assert "ValueError: the test says no" in failures[permanent]["last_error"]
    assert failures[permanent]["attempts"] == 1
    assert failures[exhausted]["attempts"] == mail_app.state.settings.OUTBOX_MAX_ATTEMPTS
    assert pending not in failures


async def test_a_handler_that_succeeded_is_not_run_again_when_another_is_retried(
    mail_app: FastAPI, smtp_sink: Sink
) -> None:
    buyer = await make_user(mail_app)
    handler = flaky_handler("password_changed", 1, ConnectionError)
    try:
        event_id = await publish_committed_without_dispatch(
            mail_app, "password_changed", {"user_id": buyer.id}
        )
        ctx = ctx_of(mail_app)
        assert await outbox.process(ctx, event_id) == "retry"
        await age(mail_app, event_id, 1)
        assert await outbox.process(ctx, event_id) == "done"
    finally:
        events._registry.outbox["password_changed"].pop("tests.test_outbox.flaky_password_changed")
    assert handler.calls == 2
    assert len(smtp_sink.of_kind("password_changed")) == 1
    async with mail_app.state.sessionmaker() as session:
        done = set(
            await session.scalars(
                select(EventHandled.handler).where(EventHandled.event_id == event_id)
            )
        )
    assert "tests.test_outbox.flaky_password_changed" in done


@pytest.mark.skipif(not is_postgres(), reason="concurrent claims need PostgreSQL")
async def test_concurrent_processors_claim_an_event_once(mail_app: FastAPI) -> None:
    handler = flaky_handler("test_claimed", 0, ValueError)
    event_id = await publish_committed_without_dispatch(mail_app, "test_claimed", {})
    ctx = ctx_of(mail_app)
    results = await asyncio.gather(*(outbox.process(ctx, event_id) for _ in range(8)))
    assert sorted(results) == ["done"] + ["skipped"] * 7
    assert handler.calls == 1
