"""Buying credit packs: a pending purchase and its payment; credits land when it succeeds.

The payment side (intents, webhooks, the reconciler) is the payments domain's; it announces
what happened to a payment, and `credits.handlers` applies it to the purchase
(`service.apply_purchase_payment_succeeded` / `apply_purchase_refunded`), whichever path sees it
first.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.credits import pricing, service
from sellerdesk.credits.repository import PurchaseRepository
from sellerdesk.errors import NotFound
from sellerdesk.kit.idempotency import IdempotencyMismatch
from sellerdesk.models import CreditPurchase, Payment
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.service import PaymentNotCompleted

log = structlog.get_logger(__name__)


async def start_purchase(
    session: AsyncSession, *, user_id: int, pack_id: int, idempotency_key: str | None = None
) -> tuple[CreditPurchase, Payment]:
    """A pending purchase of an active pack, with its payment intent.

    The purchase and its payment are committed before the provider creates the intent (see
    `payments.service.start_intent`); under an Idempotency-Key the purchase is kept for that
    key, so a retry after a failure or a crash in between resumes it and gets the same intent.
    """
    pack = await pricing.purchasable_pack(session, pack_id)
    purchases = PurchaseRepository(session)
    key_hash = service.client_key_hash(idempotency_key) if idempotency_key else None
    purchase = await purchases.by_key(user_id, key_hash) if key_hash else None
    if purchase is None:
        purchase = await purchases.add(
            CreditPurchase(
                user_id=user_id,
                pack_id=pack.id,
                credits=pack.credits,
                status="pending",
                idempotency_key=key_hash,
            )
        )
    elif purchase.pack_id != pack.id:
        raise IdempotencyMismatch(
            "This Idempotency-Key already started a purchase of another pack."
        )
    payment = await payments_service.record_payment(
        session,
        user_id=user_id,
        amount=pack.price,
        currency=pack.currency,
        purpose=f"credit_purchase:{purchase.id}",
    )
    purchase.payment_id = payment.id
    await session.flush()
    payment = await payments_service.start_intent(
        session,
        payment,
        idempotency_key=f"credit_purchase:{purchase.id}:payment_intent",
        metadata={"credit_purchase_id": str(purchase.id), "credits": str(purchase.credits)},
    )
    log.info("credit_purchase_started", user_id=user_id, purchase_id=purchase.id)
    return purchase, payment


async def start_checkout(
    session: AsyncSession, *, user_id: int, pack_id: int, success_url: str, cancel_url: str
) -> str:
    """A pending purchase paid on Stripe's hosted Checkout: the URL to send the buyer to.
    The credits land when `checkout.session.completed` (or the intent's success) arrives."""
    pack = await pricing.purchasable_pack(session, pack_id)
    purchase = await PurchaseRepository(session).add(
        CreditPurchase(user_id=user_id, pack_id=pack.id, credits=pack.credits, status="pending")
    )
    payment, url = await payments_service.create_checkout(
        session,
        user_id=user_id,
        amount=pack.price,
        currency=pack.currency,
        purpose=f"credit_purchase:{purchase.id}",
        name=f"{pack.name}: {pack.credits} credits",
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=f"credit_purchase:{purchase.id}:checkout",
        metadata={"credit_purchase_id": str(purchase.id), "credits": str(pack.credits)},
    )
    purchase.payment_id = payment.id
    await session.flush()
    log.info("credit_checkout_started", user_id=user_id, purchase_id=purchase.id)
    return url


async def own_purchase(
    session: AsyncSession, user_id: int, purchase_id: int
) -> tuple[CreditPurchase, Payment]:
    """The caller's purchase and its payment; anyone else's is 404."""
    purchase = await session.get(CreditPurchase, purchase_id, populate_existing=True)
    if purchase is None or purchase.user_id != user_id or purchase.payment_id is None:
        raise NotFound("Credit purchase not found.")
    payment = await session.get(Payment, purchase.payment_id, populate_existing=True)
    assert payment is not None  # the foreign key holds it
    return purchase, payment


async def confirm_purchase(
    session: AsyncSession, *, user_id: int, purchase_id: int
) -> tuple[CreditPurchase, Payment]:
    """Ask the provider about the purchase's payment and apply the answer (400 unless paid)."""
    purchase, payment = await own_purchase(session, user_id, purchase_id)
    if payment.status != "succeeded" and payment.intent_id is None:
        raise PaymentNotCompleted("No payment has been started for this purchase.")
    if payment.status != "succeeded":
        result = await payments_service.confirm(session, payment)
        purchase, payment = await own_purchase(session, user_id, purchase_id)
        if not result.succeeded:
            raise PaymentNotCompleted(result.message)
    return purchase, payment
