"""Payments: intents for orders and credit purchases, confirmation, refunds, the webhook, and
`apply_intent_state`, the one function that turns what the provider says into state moves
(shared by confirm, the webhook and the reconciler). Moves only go forward, so duplicated,
reordered or late news from the provider never undoes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sellerdesk.db import commit
from sellerdesk.errors import AppError, Conflict, ServiceUnavailable
from sellerdesk.kit.money import from_minor_units, to_minor_units
from sellerdesk.models import Order, Payment, Refund
from sellerdesk.models.base import utcnow
from sellerdesk.orders import service as orders_service
from sellerdesk.payments import repository as repo
from sellerdesk.payments import webhooks
from sellerdesk.payments.providers import (
    IntentInfo,
    IntentRef,
    PaymentNotCompleted,
    PaymentProvider,
)

log = structlog.get_logger(__name__)

RECONCILE_BATCH = 100

Change = Literal["succeeded", "failed", "refunded"]


# --------------------------------------------------------------------------- provider registry

# One provider per app, found from the session's engine: services called by other domains
# (credits' `create_payment`) need no provider argument, and two apps in one process (tests)
# never share one.
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
    """The payment for `purpose` ("order:12", "credit_purchase:7") with its provider intent:
    created once, returned as it is on every later call, also under concurrent calls."""
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
    if payment is None and order_id is not None:
        payment = await repo.get_by_order(session, order_id)
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


async def create_intent_for_order(
    session: AsyncSession, provider: PaymentProvider, user_id: int, order_id: int
) -> Payment:
    """The order's one payment intent (404 not the user's order, 409 not pending)."""
    order = await orders_service.get_order_for_payment(session, order_id, user_id)
    if order.status != "pending":
        raise Conflict(
            f"The order is {order.status}; only a pending order can be paid.",
            details={"status": order.status},
        )
    return await create_payment(
        session,
        user_id=order.user_id,
        amount=order.total_amount,
        currency=order.currency,
        purpose=f"order:{order.id}",
        idempotency_key=f"order:{order.id}:payment_intent",
        order_id=order.id,
        metadata={"order_id": str(order.id)},
        provider=provider,
    )


async def intent_ids_for_orders(session: AsyncSession, order_ids: list[int]) -> dict[int, str]:
    """order id → payment intent id, for the orders' JSON."""
    return await repo.intent_ids_for_orders(session, order_ids)


# --------------------------------------------------------------------------- confirming


@dataclass(frozen=True, slots=True)
class Confirmation:
    succeeded: bool
    order: Order
    message: str


async def confirm_for_order(
    session: AsyncSession, provider: PaymentProvider, user_id: int, order_id: int
) -> Confirmation:
    """Ask the provider about the order's payment and apply the answer (failures included)."""
    order = await orders_service.get_order_for_payment(session, order_id, user_id)
    payment = await repo.get_by_order(session, order.id)
    if payment is None or payment.intent_id is None:
        raise PaymentNotCompleted("No payment has been started for this order.")
    if payment.status != "succeeded" and order.status != "pending":
        # Never charge for an order that was cancelled (or expired) meanwhile.
        raise PaymentNotCompleted(f"The order is {order.status}; it can no longer be paid.")
    if payment.status != "succeeded":
        info = await provider.confirm_intent(_ref(payment))
        await apply_intent_state(session, provider, payment, info)
        payment = await _reread(session, payment.id)
        order = await orders_service.get_order_for_payment(session, order.id, None)
        if payment.status != "succeeded":
            reason = info.failure_message or f"The payment is {info.status}."
            return Confirmation(False, order, reason)
    return Confirmation(True, order, "Payment succeeded.")


# --------------------------------------------------------------------------- the state moves


async def apply_intent_state(
    session: AsyncSession, provider: PaymentProvider, payment: Payment, info: IntentInfo
) -> None:
    """Apply the provider's view of an intent, only moving forward (webhook, confirm, reconciler).

    succeeded beats pending, failed and canceled (money was captured); failed only replaces
    pending; a refunded total only grows. Each move is one conditional UPDATE, so concurrent or
    repeated calls apply each effect once.
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
            await _dispatch(session, provider, payment.id, "succeeded")
    elif info.status == "failed":
        if await repo.move_status(session, payment.id, "failed", ("pending",)):
            await _dispatch(session, provider, payment.id, "failed")
    elif info.status == "canceled":
        await repo.move_status(session, payment.id, "canceled", ("pending", "failed"))
    if info.amount_refunded > 0 and await repo.raise_refunded_to(
        session, payment.id, from_minor_units(info.amount_refunded)
    ):
        await _dispatch(session, provider, payment.id, "refunded")


async def _dispatch(
    session: AsyncSession, provider: PaymentProvider, payment_id: int, change: Change
) -> None:
    """Tell the payment's owner (its order, or a credit purchase) what changed."""
    payment = await _reread(session, payment_id)
    log.info("payment_changed", payment_id=payment.id, change=change, order_id=payment.order_id)
    order_id = payment.order_id
    if order_id is None:
        from sellerdesk.credits import service as credits_service

        if change == "succeeded":
            await credits_service.apply_purchase_payment_succeeded(session, payment)
        elif change == "failed":
            await credits_service.apply_purchase_payment_failed(session, payment)
        else:
            await credits_service.apply_purchase_refunded(session, payment)
        return
    if change == "succeeded":
        order = await orders_service.apply_payment_succeeded(session, order_id)
        if order.status == "cancelled":
            # Paid after the order was cancelled (e.g. expired while the buyer paid): the
            # money goes back in full; the stock was already returned at cancel.
            log.warning("payment_for_cancelled_order", payment_id=payment.id, order_id=order_id)
            _, payment = await _refund(session, provider, payment, None)
            await orders_service.apply_refund(
                session, order_id, payment.refunded_amount, payment.amount
            )
    elif change == "failed":
        await orders_service.apply_payment_failed(session, order_id)
    else:
        await orders_service.apply_refund(
            session, order_id, payment.refunded_amount, payment.amount
        )


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund: Refund
    payment: Payment
    order: Order


async def _refund(
    session: AsyncSession, provider: PaymentProvider, payment: Payment, amount: Decimal | None
) -> tuple[Refund, Payment]:
    """Refund `amount` (None: all that is left) through the provider, never over the capture.

    The amount is taken first by one conditional UPDATE (which locks the payment row until
    commit, so concurrent refunds queue and the loser sees too little left), then the provider
    is called with the key `refund:{refund.id}`; a failed call gives the amount back.
    """
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
    refund = await repo.add_refund(session, payment.id, wanted)
    try:
        info = await provider.refund(
            _ref(payment), amount=to_minor_units(wanted), idempotency_key=f"refund:{refund.id}"
        )
    except AppError:
        await repo.release_refund(session, payment.id, wanted)
        refund.status = "failed"
        await session.flush()
        raise
    refund.status = info.status
    refund.provider_refund_id = info.id
    await session.flush()
    log.info("payment_refunded", payment_id=payment.id, refund_id=refund.id, amount=str(wanted))
    return refund, await _reread(session, payment.id)


async def refund_order(
    session: AsyncSession, provider: PaymentProvider, order_id: int, amount: Decimal | None
) -> RefundResult:
    """Admin refund of an order's payment, full (`amount` None) or partial; 409 over the rest."""
    await orders_service.get_order_for_payment(session, order_id, None)
    payment = await repo.get_by_order(session, order_id)
    if payment is None:
        raise Conflict("This order has no payment to refund.")
    refund, payment = await _refund(session, provider, payment, amount)
    order = await orders_service.apply_refund(
        session, order_id, payment.refunded_amount, payment.amount
    )
    return RefundResult(refund, payment, order)


async def refund_order_for_cancel(session: AsyncSession, order: Order) -> None:
    """Cancelling a paid order: refund what is left in full, then cancel it (stock back)."""
    provider = provider_for(session)
    payment = await repo.get_by_order(session, order.id)
    if payment is None or payment.status != "succeeded":
        raise Conflict("This order has no captured payment to refund.")
    if payment.refunded_amount < payment.amount:
        _, payment = await _refund(session, provider, payment, None)
    await orders_service.apply_refund(
        session, order.id, payment.refunded_amount, payment.amount, cancel=True
    )


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
    await apply_intent_state(session, provider, payment, info)
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
    apply its answer; how many payments changed. Provider calls run outside transactions."""
    async with sessionmaker() as session:
        ids = await repo.stale_pending_ids(session, utcnow() - older_than, limit)
        refs = {pid: _ref(await _reread(session, pid)) for pid in ids}
    changed = 0
    for payment_id, ref in refs.items():
        try:
            info = await provider.retrieve_intent(ref)
        except AppError:
            log.warning("reconcile_provider_failed", payment_id=payment_id)
            continue
        async with sessionmaker() as session:
            payment = await _reread(session, payment_id)
            before = (payment.status, payment.refunded_amount)
            await apply_intent_state(session, provider, payment, info)
            after = await _reread(session, payment_id)
            changed += (after.status, after.refunded_amount) != before
            await commit(session)
    if changed:
        log.info("payments_reconciled", changed=changed)
    return changed
