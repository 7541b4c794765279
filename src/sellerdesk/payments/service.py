"""Payments: intents for any purpose ("order:12", "credit_purchase:7"), confirmation, refunds,
cancelling intents, the webhook and the reconciler.

`apply_intent_state` is the one function that turns what the provider says into state moves
(confirm, the webhook and the reconciler share it). Moves only go forward, so duplicated,
reordered or late news from the provider never undoes anything, and each move is announced as an
event — `payment_succeeded`, `payment_failed`, `payment_refunded` — carrying the payment's
purpose. The owners of purposes (orders, credits) react in their own handlers: this package
imports neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sellerdesk import events
from sellerdesk.db import commit
from sellerdesk.errors import Conflict, ServiceUnavailable
from sellerdesk.events import OutboxContext
from sellerdesk.kit.dates import DayRange
from sellerdesk.kit.money import from_minor_units, to_minor_units
from sellerdesk.models import Payment, Refund, WebhookEvent
from sellerdesk.models.base import utcnow
from sellerdesk.payments import repository as repo
from sellerdesk.payments import webhooks
from sellerdesk.payments.providers import IntentInfo, IntentRef, PaymentProvider, StripeProvider
from sellerdesk.payments.providers import PaymentNotCompleted as PaymentNotCompleted

log = structlog.get_logger(__name__)

RECONCILE_BATCH = 100


# --------------------------------------------------------------------------- provider registry

# One provider per app (or worker), found from the session's engine: callers in other domains
# and outbox handlers need no provider argument, and two apps in one process never share one.
_providers: WeakKeyDictionary[Engine, PaymentProvider] = WeakKeyDictionary()


def register_provider(engine: AsyncEngine, provider: PaymentProvider) -> None:
    _providers[engine.sync_engine] = provider


def provider_for(session: AsyncSession) -> PaymentProvider:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    provider = _providers.get(engine)
    if provider is None:
        raise ServiceUnavailable("No payment provider is configured for this database.")
    return provider


def _ref(payment: Payment) -> IntentRef:
    if payment.intent_id is None:
        raise PaymentNotCompleted("No payment has been started for this order.")
    return IntentRef(
        payment.intent_id,
        to_minor_units(payment.amount),
        payment.currency,
        to_minor_units(payment.refunded_amount),
    )


async def _reread(session: AsyncSession, payment_id: int) -> Payment:
    payment = await repo.get(session, payment_id)
    assert payment is not None  # it was read in this transaction and is never deleted
    return payment


async def get_by_purpose(session: AsyncSession, purpose: str) -> Payment | None:
    """The payment of `purpose`, read fresh; None before one was created."""
    return await repo.get_by_purpose(session, purpose)


# --------------------------------------------------------------------------- creating payments


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
    every later call, also under concurrent calls."""
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
    if payment.intent_id is None:
        # The provider key is deterministic: a retry after a lost response gets the same intent.
        info = await provider.create_intent(
            amount=to_minor_units(payment.amount),
            currency=payment.currency,
            idempotency_key=idempotency_key,
            metadata={**metadata, "purpose": purpose},
        )
        await repo.set_intent(session, payment.id, info.id, info.client_secret)
        payment = await _reread(session, payment.id)
        log.info("payment_intent_created", payment_id=payment.id, provider=provider.name)
    return payment


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

    Checkout makes its own intent; `checkout.session.completed` names our purpose
    (`client_reference_id`), and the webhook ties that intent to this payment.
    """
    provider = provider or provider_for(session)
    if not isinstance(provider, StripeProvider):
        raise ServiceUnavailable("Hosted checkout needs the Stripe payment provider.")
    payment_id = await repo.insert_payment(
        session,
        {
            "purpose": purpose,
            "provider": provider.name,
            "user_id": user_id,
            "amount": amount,
            "currency": currency.lower(),
            "status": "pending",
            "refunded_amount": Decimal("0.00"),
        },
    )
    if payment_id is None:
        raise Conflict("A payment for this purpose already exists.")
    checkout = await provider.create_checkout(
        amount=to_minor_units(amount),
        currency=currency.lower(),
        name=name,
        reference=purpose,
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=idempotency_key,
        metadata={**metadata, "purpose": purpose},
    )
    if checkout.intent_id is not None:
        await repo.set_intent(session, payment_id, checkout.intent_id, None)
    log.info("checkout_session_created", payment_id=payment_id, checkout_id=checkout.id)
    return await _reread(session, payment_id), checkout.url


async def _adopt_checkout_intent(
    session: AsyncSession, purpose: str, intent_id: str
) -> Payment | None:
    """The payment a completed Checkout Session was for, its intent recorded once."""
    payment = await repo.get_by_purpose(session, purpose)
    if payment is None or payment.provider != "stripe":
        return None
    if payment.intent_id is None:
        await repo.set_intent(session, payment.id, intent_id, None)
        payment = await _reread(session, payment.id)
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
    info = await provider.confirm_intent(_ref(payment))
    await apply_intent_state(session, payment, info)
    payment = await _reread(session, payment.id)
    if payment.status != "succeeded":
        message = info.failure_message or f"The payment is {info.status}."
        return Confirmation(payment, False, message)
    return Confirmation(payment, True, "Payment succeeded.")


# --------------------------------------------------------------------------- the state moves


async def apply_intent_state(session: AsyncSession, payment: Payment, info: IntentInfo) -> None:
    """Apply the provider's view of an intent, only moving forward (webhook, confirm, reconciler).

    succeeded beats pending, failed and canceled (money was captured); failed only replaces
    pending; a refunded total only grows. Each move is one conditional UPDATE, so concurrent or
    repeated calls announce each move once.
    """
    if info.status == "succeeded" and (
        info.amount != to_minor_units(payment.amount) or info.currency != payment.currency
    ):
        log.error(
            "payment_amount_mismatch",
            payment_id=payment.id,
            expected=to_minor_units(payment.amount),
            got=info.amount,
            currency=info.currency,
        )
        return
    if info.status == "succeeded":
        if await repo.move_status(
            session, payment.id, "succeeded", ("pending", "failed", "canceled")
        ):
            await _announce(session, payment.id, "payment_succeeded")
    elif info.status == "failed":
        if await repo.move_status(session, payment.id, "failed", ("pending",)):
            await _announce(session, payment.id, "payment_failed")
    elif info.status == "canceled":
        await repo.move_status(session, payment.id, "canceled", ("pending", "failed"))
    if info.amount_refunded > 0:
        before = (await _reread(session, payment.id)).refunded_amount
        if await repo.raise_refunded_to(
            session, payment.id, from_minor_units(info.amount_refunded)
        ):
            # A refund made at the provider: recorded with its amount, on the day we learn it.
            await repo.add_refund(
                session,
                payment.id,
                from_minor_units(info.amount_refunded) - before,
                status="succeeded",
            )
            await _announce(
                session,
                payment.id,
                "payment_refunded",
                refunded_now=str(from_minor_units(info.amount_refunded) - before),
                reason=None,
            )


async def _announce(session: AsyncSession, payment_id: int, kind: str, **extra: Any) -> None:
    """Publish what happened to a payment, with what its purpose's owner needs to react."""
    payment = await _reread(session, payment_id)
    log.info("payment_changed", payment_id=payment.id, kind=kind, purpose=payment.purpose)
    await events.publish(
        session,
        kind,
        {
            "payment_id": payment.id,
            "purpose": payment.purpose,
            "order_id": payment.order_id,
            "user_id": payment.user_id,
            "amount": str(payment.amount),
            "refunded_amount": str(payment.refunded_amount),
            "currency": payment.currency,
            "intent_id": payment.intent_id,
            **extra,
        },
    )


# --------------------------------------------------------------------------- refunds


async def refund(
    session: AsyncSession,
    payment: Payment,
    amount: Decimal | None,
    *,
    reason: str | None = None,
    idempotency_key: str | None = None,
    provider: PaymentProvider | None = None,
) -> tuple[Refund, Payment]:
    """Refund `amount` (None: all that is left) through the provider, never over the capture,
    and announce it (`payment_refunded`, with the caller's `reason`).

    The amount is taken first by one conditional UPDATE (which locks the payment row until
    commit, so concurrent refunds queue and the loser sees too little left), then the provider
    is called with `idempotency_key` (default `refund:{refund.id}`); a failed call gives the
    amount back.
    """
    provider = provider or provider_for(session)
    payment = await _reread(session, payment.id)
    if payment.status != "succeeded":
        raise Conflict(
            "This payment has not been captured; there is nothing to refund.",
            details={"payment_status": payment.status},
        )
    wanted = amount if amount is not None else payment.amount - payment.refunded_amount
    reserved = await repo.reserve_refund(session, payment.id, wanted) if wanted > 0 else None
    if reserved is None:
        current = await _reread(session, payment.id)
        left = current.amount - current.refunded_amount
        raise Conflict(
            "The refund exceeds what is left to refund."
            if left > 0
            else "This payment is already refunded in full.",
            details={
                "requested": str(wanted),
                "captured": str(current.amount),
                "refunded": str(current.refunded_amount),
                "refundable": str(left),
            },
        )
    row = await repo.add_refund(session, payment.id, wanted)
    try:
        info = await provider.refund(
            _ref(payment),
            amount=to_minor_units(wanted),
            idempotency_key=idempotency_key or f"refund:{row.id}",
        )
    except Exception:
        await repo.release_refund(session, payment.id, wanted)
        row.status = "failed"
        await session.flush()
        raise
    row.status = info.status
    row.provider_refund_id = info.id
    await session.flush()
    log.info("payment_refunded", payment_id=payment.id, refund_id=row.id, amount=str(wanted))
    await _announce(
        session, payment.id, "payment_refunded", refunded_now=str(wanted), reason=reason
    )
    return row, await _reread(session, payment.id)


async def refund_rest_once(
    ctx: OutboxContext, payment_id: int, *, idempotency_key: str, reason: str
) -> bool:
    """For outbox handlers: refund whatever is left of a captured payment, in its own
    transaction, with a deterministic provider key, so running it twice refunds once. True when
    this call refunded something."""
    async with ctx.sessionmaker() as session:
        payment = await repo.get(session, payment_id)
        if (
            payment is None
            or payment.status != "succeeded"
            or payment.refunded_amount >= payment.amount
        ):
            await session.rollback()
            return False
        await refund(session, payment, None, reason=reason, idempotency_key=idempotency_key)
        await commit(session)
    return True


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
    info = await provider.cancel_intent(_ref(payment))
    async with ctx.sessionmaker() as session:
        current = await _reread(session, payment.id)
        await apply_intent_state(session, current, info)
        status = (await _reread(session, payment.id)).status
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
    # Concurrent deliveries of one id wait here for the first transaction, then do nothing.
    if not await repo.record_event(session, event_id, event_type):
        log.info("webhook_duplicate", event_id=event_id, type=event_type)
        return "duplicate"
    info = observation.info
    if observation.reread and provider.name == "stripe":
        info = await provider.retrieve_intent(_ref(payment))
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
        refs = {pid: _ref(await _reread(session, pid)) for pid in ids}
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
        payment = await _reread(session, payment_id)
        before = (payment.status, payment.refunded_amount)
        await apply_intent_state(session, payment, info)
        after = await _reread(session, payment_id)
        await commit(session)
    return (after.status, after.refunded_amount) != before
