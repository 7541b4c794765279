"""The state of a payment and the one place it moves: what the provider says about an intent
(`apply_intent_state`: confirm, the webhook, the reconciler and refunds share it), and each move
announced as an event — `payment_succeeded`, `payment_failed`, `payment_refunded` — carrying
the payment's purpose, for its owner (orders, credits) to react. Moves only go forward, so
duplicated, reordered or late news from the provider never undoes anything.

Also the provider registry: one provider per app (or worker), found from the session's engine.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sellerdesk import events
from sellerdesk.errors import ServiceUnavailable
from sellerdesk.kit.money import from_minor_units, to_minor_units
from sellerdesk.models import Payment
from sellerdesk.payments import repository as repo
from sellerdesk.payments.providers import (
    IntentInfo,
    IntentRef,
    PaymentNotCompleted,
    PaymentProvider,
)

log = structlog.get_logger(__name__)

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


def intent_ref(payment: Payment) -> IntentRef:
    """What the provider needs to know about the payment's intent."""
    if payment.intent_id is None:
        raise PaymentNotCompleted("No payment has been started for this order.")
    return IntentRef(
        payment.intent_id,
        to_minor_units(payment.amount),
        payment.currency,
        to_minor_units(payment.refunded_amount),
    )


async def reread(session: AsyncSession, payment_id: int) -> Payment:
    """The payment as it is now (read in this transaction before; never deleted)."""
    payment = await repo.get(session, payment_id)
    assert payment is not None  # it was read in this transaction and is never deleted
    return payment


# --------------------------------------------------------------------------- the state moves


async def apply_intent_state(session: AsyncSession, payment: Payment, info: IntentInfo) -> None:
    """Apply the provider's view of an intent, only moving forward (webhook, confirm, reconciler).

    succeeded beats pending, failed and canceled (money was captured); failed only replaces
    pending; a refunded total only grows: a provider's total above what we refunded and hold for
    pending refunds is a refund made at the provider (its dashboard), recorded as a `provider`
    refund row. Each move is conditional (or under the payment's row lock), so concurrent or
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
            await announce(session, payment.id, "payment_succeeded")
    elif info.status == "failed":
        if await repo.move_status(session, payment.id, "failed", ("pending",)):
            await announce(session, payment.id, "payment_failed")
    elif info.status == "canceled":
        await repo.move_status(session, payment.id, "canceled", ("pending", "failed"))
    if info.amount_refunded > 0:
        await _record_provider_refunds(session, payment.id, from_minor_units(info.amount_refunded))


async def _record_provider_refunds(session: AsyncSession, payment_id: int, total: Decimal) -> None:
    """The provider has refunded `total` in all: what exceeds our refunds (succeeded and
    pending) was refunded at the provider, and is recorded and announced."""
    current = await repo.lock(session, payment_id)
    if current is None or current.status != "succeeded" or total > current.amount:
        return
    extra = total - current.refunded_amount - current.refund_reserved
    if extra <= 0:
        return
    await repo.add_to_refunded(session, payment_id, extra)
    await repo.add_provider_refund(session, payment_id, extra)
    log.info("provider_refund_recorded", payment_id=payment_id, amount=str(extra))
    await announce(session, payment_id, "payment_refunded", refunded_now=str(extra), reason=None)


async def announce(session: AsyncSession, payment_id: int, kind: str, **extra: Any) -> None:
    """Publish what happened to a payment, with what its purpose's owner needs to react."""
    payment = await reread(session, payment_id)
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
