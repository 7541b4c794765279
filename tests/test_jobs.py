"""Periodic jobs: one runner at a time under a lease, their last run for admins, the reconciler
that never lets one payment stop the others, the purges; broker settings and readiness;
cancelling an unpaid order cancels its provider intent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import stripe
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import func, select, update

from sellerdesk import jobs
from sellerdesk.models import CreditPaidLookup, DomainEvent, JobRun, Order, Payment
from sellerdesk.models.base import utcnow
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import IntentInfo, IntentRef, ManualProvider, ProviderFailed
from tests.conftest import REDIS_URL, AppFactory, make_settings
from tests.orders_factories import make_product, make_user, place_order
from tests.stripe_fixtures import localstripe, make_order, stripe_client, stripe_settings

__all__ = ["localstripe"]

INTENT = "/api/v1/payments/create-payment-intent"


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def job_rows(app: FastAPI) -> dict[str, JobRun]:
    async with app.state.sessionmaker() as session:
        return await jobs.last_runs(session)


# --------------------------------------------------------------------------- leases


async def test_two_schedulers_run_each_due_job_once_and_not_again_before_its_interval(
    app: FastAPI,
) -> None:
    first, second = jobs.Scheduler(app.state.runtime), jobs.Scheduler(app.state.runtime)
    results = await asyncio.gather(first.run_due(), second.run_due())
    for job in jobs.SCHEDULE:
        assert sorted(r[job.name] for r in results) == ["ran", "skipped"], job.name
    runs = await job_rows(app)
    assert {name: run.last_status for name, run in runs.items()} == {
        job.name: "ok" for job in jobs.SCHEDULE
    }
    assert all(run.lease_owner is None and run.last_finished_at for run in runs.values())
    assert set((await first.run_due()).values()) == {"skipped"}  # not due yet


async def test_a_lease_left_by_a_dead_runner_is_taken_over_once_it_expires(app: FastAPI) -> None:
    job = jobs.JOBS["sweep_outbox"]
    runtime = app.state.runtime
    assert await jobs.run_periodic(runtime, job, owner="a", respect_interval=False) == "ran"
    async with app.state.sessionmaker() as session:  # a runner took the lease and died
        await session.execute(
            update(JobRun)
            .where(JobRun.name == job.name)
            .values(lease_owner="dead", lease_expires_at=utcnow() + timedelta(seconds=60))
        )
        await session.commit()
    assert await jobs.run_periodic(runtime, job, owner="b", respect_interval=False) == "skipped"
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(JobRun)
            .where(JobRun.name == job.name)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert await jobs.run_periodic(runtime, job, owner="b", respect_interval=False) == "ran"


async def test_a_failing_job_records_its_error_and_frees_its_lease(app: FastAPI) -> None:
    async def broken(rt: jobs.Runtime) -> int:
        raise RuntimeError("the job broke")

    job = jobs.PeriodicJob("broken_job", broken, 60)
    assert await jobs.run_periodic(app.state.runtime, job, owner="x", respect_interval=True) == (
        "failed"
    )
    run = (await job_rows(app))["broken_job"]
    assert (run.last_status, run.lease_owner) == ("failed", None)
    assert run.last_error == "RuntimeError: the job broke"


async def test_admin_jobs_shows_the_last_run_of_each_periodic_job(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin, user = await make_user(app, admin=True), await make_user(app)
    assert (await client.get("/api/v1/admin/jobs")).status_code == 401
    forbidden = await client.get("/api/v1/admin/jobs", headers=user.headers)
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    before = (await client.get("/api/v1/admin/jobs", headers=admin.headers)).json()
    assert [p["name"] for p in before["periodic"]] == [j.name for j in jobs.SCHEDULE]
    assert all(p["last_started_at"] is None for p in before["periodic"])
    assert before["outbox"] == {"pending": 0, "failed": 0, "by_kind": [], "recent_failures": []}

    await jobs.Scheduler(app.state.runtime).run_due()
    after = (await client.get("/api/v1/admin/jobs", headers=admin.headers)).json()
    for shown in after["periodic"]:
        assert shown["last_status"] == "ok" and shown["running"] is False
        assert shown["last_started_at"] <= shown["last_finished_at"]
        assert shown["every_seconds"] == jobs.JOBS[shown["name"]].every_seconds


# --------------------------------------------------------------------------- the reconciler


class FlakyProvider(ManualProvider):
    """A gateway where every intent has succeeded, except those told to fail on retrieve."""

    def __init__(self, failing: dict[str, Exception]) -> None:
        self.failing = failing

    async def retrieve_intent(self, ref: IntentRef) -> IntentInfo:
        if ref.intent_id in self.failing:
            raise self.failing[ref.intent_id]
        return IntentInfo(ref.intent_id, "succeeded", ref.amount, ref.currency)


async def test_the_reconciler_handles_each_payment_on_its_own(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    intents: dict[int, str] = {}
    for total in ("10.00", "20.00", "30.00", "40.00"):
        order_id = await make_order(app, buyer.id, total)
        answer = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
        intents[order_id] = answer.json()["payment_intent_id"]
    async with app.state.sessionmaker() as session:
        await session.execute(update(Payment).values(created_at=utcnow() - timedelta(hours=1)))
        await session.commit()
    first, second, third, fourth = intents
    provider = FlakyProvider(
        {intents[first]: ProviderFailed(), intents[third]: RuntimeError("unexpected answer")}
    )

    changed = await payments_service.reconcile_pending_payments(
        app.state.sessionmaker, provider, older_than=timedelta(minutes=10)
    )

    assert changed == 2
    async with app.state.sessionmaker() as session:
        statuses = {i: s for i, s in await session.execute(select(Order.id, Order.status))}
    assert statuses == {first: "pending", second: "paid", third: "pending", fourth: "paid"}
    provider.failing.clear()  # the next run picks the two up
    assert (
        await payments_service.reconcile_pending_payments(
            app.state.sessionmaker, provider, older_than=timedelta(minutes=10)
        )
        == 2
    )


# --------------------------------------------------------------------------- purges


async def test_purge_removes_old_done_events_and_expired_repeat_markers(app: FastAPI) -> None:
    buyer = await make_user(app)
    settings = app.state.settings
    old = utcnow() - timedelta(days=settings.OUTBOX_RETENTION_DAYS + 1)
    async with app.state.sessionmaker() as session:
        session.add_all(
            [
                DomainEvent(kind="old_done", payload={}, status="done", processed_at=old),
                DomainEvent(kind="old_failed", payload={}, status="failed", processed_at=old),
                DomainEvent(kind="new_done", payload={}, status="done", processed_at=utcnow()),
                CreditPaidLookup(
                    user_id=buyer.id,
                    endpoint="asin_lookup",
                    code="OLD",
                    paid_at=utcnow() - timedelta(seconds=settings.CREDITS_REPEAT_WINDOW + 5),
                ),
                CreditPaidLookup(
                    user_id=buyer.id, endpoint="asin_lookup", code="NEW", paid_at=utcnow()
                ),
            ]
        )
        await session.commit()
    assert await jobs.purge_expired(app.state.runtime) == 2
    async with app.state.sessionmaker() as session:
        kinds = set(await session.scalars(select(DomainEvent.kind)))
        codes = set(await session.scalars(select(CreditPaidLookup.code)))
    assert kinds == {"old_failed", "new_done"}
    assert codes == {"NEW"}


# --------------------------------------------------------------------------- broker settings


def test_the_broker_is_only_celery_broker_url_never_redis_url() -> None:
    settings = make_settings("sqlite+aiosqlite://", "redis://127.0.0.1:6379/0", "p")
    assert settings.broker_url is None
    with_broker = make_settings(
        "sqlite+aiosqlite://", None, "p", CELERY_BROKER_URL="redis://127.0.0.1:6379/1"
    )
    assert with_broker.broker_url == "redis://127.0.0.1:6379/1"


def test_time_limits_must_stay_below_the_visibility_timeout() -> None:
    with pytest.raises(ValidationError, match="below CELERY_VISIBILITY_TIMEOUT_SECONDS"):
        make_settings(
            "sqlite+aiosqlite://",
            None,
            "p",
            CELERY_VISIBILITY_TIMEOUT_SECONDS=60,
            JOB_TIME_LIMIT_SECONDS=60,
        )


async def test_readiness_checks_the_broker_only_when_one_is_set(make_app: AppFactory) -> None:
    plain = await make_app()
    with_broker = await make_app(CELERY_BROKER_URL=REDIS_URL)
    down = await make_app(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    answers = {}
    for name, app in (("plain", plain), ("with_broker", with_broker), ("down", down)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            answers[name] = await c.get("/health/ready")
    assert "broker" not in answers["plain"].json()["checks"]
    assert answers["with_broker"].status_code == 200
    assert answers["with_broker"].json()["checks"]["broker"] == "ok"
    assert answers["down"].status_code == 503
    assert answers["down"].json()["checks"]["broker"] == "unavailable"


# --------------------------------------------------------------------------- unpaid cancels


async def _payment(app: FastAPI, order_id: int) -> Payment:
    async with app.state.sessionmaker() as session:
        payment = await session.scalar(select(Payment).where(Payment.order_id == order_id))
    assert payment is not None
    return payment


async def test_cancelling_an_unpaid_order_fails_its_payment_and_cancels_the_intent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    order = await place_order(client, buyer, await make_product(app))
    await client.post(INTENT, json={"order_id": order["id"]}, headers=buyer.headers)
    cancelled = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert (cancelled.json()["status"], cancelled.json()["payment_status"]) == (
        "cancelled",
        "failed",
    )
    assert await app.state.dispatcher.drain(10)
    assert (await _payment(app, order["id"])).status == "canceled"
    refused = await client.post(
        f"/api/v1/payments/confirm-payment/{order['id']}", headers=buyer.headers
    )
    assert refused.status_code == 400 and refused.json()["error"] == "payment_error"


async def test_an_expired_order_without_an_intent_just_fails_its_payment_status(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    order = await place_order(client, buyer, await make_product(app))
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Order)
            .where(Order.id == order["id"])
            .values(created_at=utcnow() - timedelta(days=1))
        )
        await session.commit()
    assert await jobs.expire_unpaid_orders(app.state.runtime) == 1
    assert await app.state.dispatcher.drain(10)
    shown = (await client.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert (shown["status"], shown["payment_status"]) == ("cancelled", "failed")
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0
        pending = await session.scalar(select(func.count()).where(DomainEvent.status != "done"))
    assert pending == 0


async def test_cancelling_an_unpaid_stripe_order_cancels_its_intent_at_stripe(
    make_app: AppFactory, localstripe: str
) -> None:
    app = await make_app(**stripe_settings(localstripe))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        buyer = await make_user(app)
        order_id = await make_order(app, buyer.id, "25.00")
        intent = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
        intent_id = intent.json()["payment_intent_id"]
        await client.post(f"/api/v1/orders/{order_id}/cancel", headers=buyer.headers)
        assert await app.state.dispatcher.drain(10)
    http = stripe.HTTPXClient()
    try:
        at_stripe = await stripe_client(localstripe, http).v1.payment_intents.retrieve_async(
            intent_id
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]
    assert at_stripe.status == "canceled"
    payment = await _payment(app, order_id)
    assert (payment.status, payment.refunded_amount) == ("canceled", Decimal("0.00"))


async def test_a_cancel_that_loses_the_race_to_a_payment_refunds_it(app: FastAPI) -> None:
    """The provider says the intent succeeded when we cancel it: it is refunded in full."""

    class PaidMeanwhile(ManualProvider):
        async def cancel_intent(self, ref: IntentRef) -> IntentInfo:
            return IntentInfo(ref.intent_id, "succeeded", ref.amount, ref.currency)

    payments_service.register_provider(app.state.engine, PaidMeanwhile())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        buyer = await make_user(app)
        order = await place_order(client, buyer, await make_product(app, price="8.00"))
        await client.post(INTENT, json={"order_id": order["id"]}, headers=buyer.headers)
        await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
        assert await app.state.dispatcher.drain(10)
        shown = (await client.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert (shown["status"], shown["payment_status"]) == ("cancelled", "refunded")
    payment = await _payment(app, order["id"])
    assert (payment.status, payment.refunded_amount) == ("succeeded", Decimal("8.00"))
