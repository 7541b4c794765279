"""Buying credit packs: a pending purchase and its payment; credits land when it succeeds.

The payment side (intents, webhooks, the reconciler) is the payments domain's; it announces
what happened to a payment, and `credits.handlers` applies it to the purchase
(`service.apply_purchase_payment_succeeded` / `apply_purchase_refunded`), whichever path sees it
first.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.credits import pricing
from sellerdesk.credits.repository import PurchaseRepository
from sellerdesk.errors import NotFound
from sellerdesk.models import CreditPurchase, Payment
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.service import PaymentNotCompleted

log = structlog.get_logger(__name__)


async def start_purchase(
    session: AsyncSession, *, user_id: int, pack_id: int
) -> tuple[CreditPurchase, Payment]:
    """A pending purchase of an active pack, with its payment intent."""
    pack = await pricing.purchasable_pack(session, pack_id)
    purchases = PurchaseRepository(session)
    purchase = await purchases.add(
        CreditPurchase(user_id=user_id, pack_id=pack.id, credits=pack.credits, status="pending")
    )
    payment = await payments_service.create_payment(
        session,
        user_id=user_id,
        amount=pack.price,
        currency=pack.currency,
        purpose=f"credit_purchase:{purchase.id}",
        idempotency_key=f"credit_purchase:{purchase.id}:payment_intent",
        metadata={"credit_purchase_id": str(purchase.id), "credits": str(pack.credits)},
    )
    purchase.payment_id = payment.id
    await session.flush()
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
    if payment.status != "succeeded" and payment.intent_id is not None:
        result = await payments_service.confirm(session, payment)
        purchase, payment = await own_purchase(session, user_id, purchase_id)
        if not result.succeeded:
            raise PaymentNotCompleted(result.message)
    return purchase, payment
