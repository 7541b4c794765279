"""Payments: intents for any purpose ("order:12", "credit_purchase:7"), confirmation, refunds,
cancelling intents, the webhook and the reconciler — the payments domain's one public module
(refunds live in `payments.refunds`, the state moves and the provider registry in
`payments.state`, and are exported from here).

What the provider says becomes state moves in one function, `apply_intent_state`; each move is
announced as an event carrying the payment's purpose, and the owners of purposes (orders,
credits) react in their own handlers: this package imports neither of them.

No provider call runs inside a database transaction (on SQLite every transaction holds the one
write lock, and a Stripe call may take 30 s and retries): what we are about to do is recorded
and committed first, the provider is called with a deterministic idempotency key and no
transaction open, and its answer is applied in the caller's next transaction. So
`create_payment`, `start_intent`, `confirm`, `refund` and `handle_event` (when it re-reads an
intent) commit the caller's transaction before they call the provider — the documented
exception to "services never commit" — and leave the answer for the caller to commit (a route:
with its response and its stored Idempotency-Key answer). A crash between the phases leaves a
state that a retry resumes under the same key and a periodic job settles: a payment without
its intent is completed by the retry (nobody can pay it meanwhile), a payment whose answer was
lost by `reconcile_pending_payments`, a refund left `pending` by `settle_pending_refunds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk.db import commit
from sellerdesk.errors import Conflict, ServiceUnavailable
from sellerdesk.events import OutboxContext
from sellerdesk.kit.dates import DayRange
from sellerdesk.kit.money import to_minor_units
from sellerdesk.models import Payment, WebhookEvent
from sellerdesk.models.base import utcnow
from sellerdesk.payments import repository as repo
from sellerdesk.payments import webhooks
from sellerdesk.payments.providers import IntentRef, PaymentProvider, StripeProvider
from sellerdesk.payments.providers import PaymentNotCompleted as PaymentNotCompleted
from sellerdesk.payments.refunds import refund as refund
from sellerdesk.payments.refunds import refund_rest_once as refund_rest_once
from sellerdesk.payments.refunds import request_key_for as request_key_for
from sellerdesk.payments.refunds import settle_pending_refunds as settle_pending_refunds
from sellerdesk.payments.state import apply_intent_state as apply_intent_state
from sellerdesk.payments.state import intent_ref, provider_for, reread
from sellerdesk.payments.state import register_provider as register_provider

log = structlog.get_logger(__name__)

RECONCILE_BATCH = 100


async def get_by_purpose(session: AsyncSession, purpose: str) -> Payment | None:
    """The payment of `purpose`, read fresh; None before one was created."""
    return await repo.get_by_purpose(session, purpose)


# --------------------------------------------------------------------------- creating payments


async def record_payment(
    session: AsyncSession,
    *,
    user_id: int,
    amount: Decimal,
    currency: str,
    purpose: str,
    order_id: int | None = None,
    provider: PaymentProvider | None = None,
) -> Payment:
    """The payment row of `purpose`, inserted once (concurrent callers get the same row), in
    the caller's transaction; `start_intent` then gets its provider intent."""
    provider = provider or provider_for(session)
    payment_id = await repo.insert_payment(
        session,
        {
            "purpose": purpose,
            "provider": provider.name,
            "order_id": order_id,
            "user_id": user_id,
            "amount": amount,
            "currency": currency.lower(),
            "status": "pending",
            "refunded_amount": Decimal("0.00"),
        },
    )
    payment = await (
        repo.get(session, payment_id) if payment_id else repo.get_by_purpose(session, purpose)
    )
    if payment is None:  # pragma: no cover - the conflicting row was committed before we read
        raise Conflict("A payment for this purpose is being created; retry.")
    return payment


async def start_intent(
    session: AsyncSession,
    payment: Payment,
    *,
    idempotency_key: str,
    metadata: dict[str, str],
    provider: PaymentProvider | None = None,
) -> Payment:
    """The payment with its provider intent, created once under `idempotency_key`.

    Commits the caller's transaction (the payment row is durable before the provider hears of
    it), asks the provider with no transaction open — the deterministic key gives concurrent
    callers, and a retry after a crash, the same intent — and records the intent in the
    caller's next transaction (a conditional UPDATE: the first recorded one stays).
    """
    if payment.intent_id is not None:
        return payment
    provider = provider or provider_for(session)
    await commit(session)
    info = await provider.create_intent(
        amount=to_minor_units(payment.amount),
        currency=payment.currency,
        idempotency_key=idempotency_key,
        metadata={**metadata, "purpose": payment.purpose},
    )
    await repo.set_intent(session, payment.id, info.id, info.client_secret)
    payment = await reread(session, payment.id)
    log.info("payment_intent_created", payment_id=payment.id, provider=provider.name)
    return payment


async def create_payment(
    session: AsyncSession,
    *,
    user_id: int,
    amount: Decimal,
    currency: str,
    purpose: str,
    idempotency_key: str,
    order_id: int | None = None,
    metadata: dict[str, str],
    provider: PaymentProvider | None = None,
) -> Payment:
    """The payment for `purpose` with its provider intent: created once, returned as it is on
    every later call, also under concurrent calls (`record_payment`, then `start_intent`)."""
    payment = await record_payment(
        session,
        user_id=user_id,
        amount=amount,
        currency=currency,
        purpose=purpose,
        order_id=order_id,
        provider=provider,
    )
    return await start_intent(
        session, payment, idempotency_key=idempotency_key, metadata=metadata, provider=provider
    )


async def create_checkout(
    session: AsyncSession,
    *,
    user_id: int,
    amount: Decimal,
    currency: str,
    purpose: str,
    name: str,
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
    metadata: dict[str, str],
    provider: PaymentProvider | None = None,
) -> tuple[Payment, str]:
    """The payment for `purpose`, paid on Stripe's hosted Checkout: (payment, the page's URL).

    The payment row is committed first and Stripe is asked with no transaction open (a
    deterministic key gives a retry the same session). Checkout makes its own intent;
    `checkout.session.completed` names our purpose (`client_reference_id`), and the webhook ties
    that intent to this payment.
    """
    provider = provider or provider_for(session)
    if not isinstance(provider, StripeProvider):
        raise ServiceUnavailable("Hosted checkout needs the Stripe payment provider.")
    payment = await record_payment(
        session,
        user_id=user_id,
        amount=amount,
        currency=currency,
        purpose=purpose,
        provider=provider,
    )
    await commit(session)  # no transaction open while Stripe works
    checkout = await provider.create_checkout(
        amount=to_minor_units(payment.amount),
        currency=payment.currency,
        name=name,
        reference=purpose,
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=idempotency_key,
        metadata={**metadata, "purpose": purpose},
    )
    if checkout.intent_id is not None:
        await repo.set_intent(session, payment.id, checkout.intent_id, None)
    log.info("checkout_session_created", payment_id=payment.id, checkout_id=checkout.id)
    return await reread(session, payment.id), checkout.url


async def _adopt_checkout_intent(
    session: AsyncSession, purpose: str, intent_id: str
) -> Payment | None:
    """The payment a completed Checkout Session was for, its intent recorded once."""
    payment = await repo.get_by_purpose(session, purpose)
    if payment is None or payment.provider != "stripe":
        return None
    if payment.intent_id is None:
        await repo.set_intent(session, payment.id, intent_id, None)
        payment = await reread(session, payment.id)
    return payment if payment.intent_id == intent_id else None


# --------------------------------------------------------------------------- confirming


@dataclass(frozen=True, slots=True)
class Confirmation:
    payment: Payment
    succeeded: bool
    message: str


async def confirm(
    session: AsyncSession, payment: Payment, provider: PaymentProvider | None = None
) -> Confirmation:
    """Ask the provider about a payment (confirming it when it waits for that) and apply the
    answer, failures included; an already captured payment is left as it is."""
    if payment.status == "succeeded":
        return Confirmation(payment, True, "Payment succeeded.")
    provider = provider or provider_for(session)
    ref = intent_ref(payment)
    await commit(session)  # no transaction open while the provider works
    info = await provider.confirm_intent(ref)
    payment = await reread(session, payment.id)
    await apply_intent_state(session, payment, info)
    payment = await reread(session, payment.id)
    if payment.status != "succeeded":
        message = info.failure_message or f"The payment is {info.status}."
        return Confirmation(payment, False, message)
    return Confirmation(payment, True, "Payment succeeded.")


async def cancel_unpaid(ctx: OutboxContext, purpose: str) -> str | None:
    """For outbox handlers: cancel the provider intent of a payment nobody should make any more
    (its order was cancelled). The call runs outside any transaction; its answer is applied
    like any other (a payment that won the race is announced as succeeded, and its owner
    refunds it). The payment's state after, or None when there was nothing to cancel."""
    async with ctx.sessionmaker() as session:
        payment = await repo.get_by_purpose(session, purpose)
        await session.commit()
        if payment is None or payment.intent_id is None or payment.status == "succeeded":
            return None
        provider = provider_for(session)
    info = await provider.cancel_intent(intent_ref(payment))
    async with ctx.sessionmaker() as session:
        current = await reread(session, payment.id)
        await apply_intent_state(session, current, info)
        status = (await reread(session, payment.id)).status
        await commit(session)
    log.info("payment_intent_cancelled", payment_id=payment.id, status=status)
    return status


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True, slots=True)
class MoneyDay:
    captured: Decimal
    refunded: Decimal

    @property
    def net(self) -> Decimal:
        return self.captured - self.refunded


async def money_per_day(
    session: AsyncSession, days: DayRange, currency: str
) -> dict[date, MoneyDay]:
    """Per UTC day of the range: money captured (orders and credit packs alike) and money
    refunded, each on its own day, in `currency`; days with neither left out."""
    captured = await repo.captured_per_day(session, days, currency)
    refunded = await repo.refunded_per_day(session, days, currency)
    zero = Decimal("0.00")
    return {
        day: MoneyDay(captured.get(day, zero), refunded.get(day, zero))
        for day in sorted(captured.keys() | refunded.keys())
    }


async def days_with_pending_refunds(session: AsyncSession, days: DayRange) -> set[date]:
    """Days of the range whose refunds are not all settled yet."""
    return await repo.days_with_pending_refunds(session, days)


async def recent_webhook_events(session: AsyncSession, limit: int = 50) -> list[WebhookEvent]:
    """The provider events received last, newest first."""
    return await repo.recent_events(session, limit)


# --------------------------------------------------------------------------- webhook


async def handle_event(
    session: AsyncSession, provider: PaymentProvider, event: dict[str, Any]
) -> str:
    """Apply a verified event once: its id is inserted in the same transaction as its effect."""
    event_id, event_type = event["id"], event["type"]
    observation = webhooks.observe(event_type, event["data"]["object"])
    if observation is None:
        log.info("webhook_ignored", event_id=event_id, type=event_type)
        return "ignored"
    payment = await repo.get_by_intent(session, observation.info.id)
    if payment is None and observation.reference is not None:
        payment = await _adopt_checkout_intent(session, observation.reference, observation.info.id)
    if payment is None:
        log.info("webhook_unmatched", event_id=event_id, type=event_type)
        return "unmatched"
    info = observation.info
    if observation.reread and provider.name == "stripe":
        if await repo.event_recorded(session, event_id):
            log.info("webhook_duplicate", event_id=event_id, type=event_type)
            return "duplicate"
        # A summary: ask Stripe for the intent itself, with no transaction open.
        ref = intent_ref(payment)
        await commit(session)
        info = await provider.retrieve_intent(ref)
        payment = await reread(session, payment.id)
    # Concurrent deliveries of one id wait here for the first transaction, then do nothing.
    if not await repo.record_event(session, event_id, event_type):
        log.info("webhook_duplicate", event_id=event_id, type=event_type)
        return "duplicate"
    await apply_intent_state(session, payment, info)
    log.info("webhook_applied", event_id=event_id, type=event_type, payment_id=payment.id)
    return "applied"


# --------------------------------------------------------------------------- reconciler


async def reconcile_pending_payments(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    *,
    older_than: timedelta,
    limit: int = RECONCILE_BATCH,
) -> int:
    """Ask the provider about payments still pending after `older_than` (lost webhooks) and
    apply its answer; how many payments changed. Provider calls run outside transactions, and
    each payment is on its own: one that fails (provider error or anything else) is logged and
    tried again next run, and never stops the others."""
    async with sessionmaker() as session:
        ids = await repo.stale_pending_ids(session, utcnow() - older_than, limit)
        refs = {pid: intent_ref(await reread(session, pid)) for pid in ids}
        await session.commit()
    changed = 0
    for payment_id, ref in refs.items():
        try:
            changed += await _reconcile_one(sessionmaker, provider, payment_id, ref)
        except Exception:
            log.exception("reconcile_payment_failed", payment_id=payment_id)
    if changed:
        log.info("payments_reconciled", changed=changed)
    return changed


async def _reconcile_one(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    payment_id: int,
    ref: IntentRef,
) -> bool:
    info = await provider.retrieve_intent(ref)
    async with sessionmaker() as session:
        payment = await reread(session, payment_id)
        before = (payment.status, payment.refunded_amount)
        await apply_intent_state(session, payment, info)
        after = await reread(session, payment_id)
        await commit(session)
    return (after.status, after.refunded_amount) != before
