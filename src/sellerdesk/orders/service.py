"""Checkout, paying for an order, and the order lifecycle; every status change goes through
`orders.state`.

Orders pay through the payments service (intent, confirm, refund) and learn what happened to a
payment from its events: `orders.handlers` calls `apply_payment_succeeded`,
`apply_payment_failed` and `apply_refund`, each idempotent and only moving state forward. Each
move is announced in turn (`order_paid`, `order_cancelled`, `order_shipped`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk import events
from sellerdesk.cart import service as cart_service
from sellerdesk.config import Settings
from sellerdesk.db import commit
from sellerdesk.errors import Conflict, NotFound, ValidationFailed
from sellerdesk.inventory import service as inventory
from sellerdesk.kit.cache import Cache
from sellerdesk.kit.dates import DayRange
from sellerdesk.kit.money import MAX_AMOUNT
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import Order, OrderItem, Payment, Refund, User
from sellerdesk.models.base import utcnow
from sellerdesk.orders import state
from sellerdesk.orders.repository import DaySales, OrderRepository
from sellerdesk.orders.schemas import CheckoutIn
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.service import PaymentNotCompleted

log = structlog.get_logger(__name__)

EXPIRY_BATCH = 100


# --------------------------------------------------------------------------- checkout


async def checkout(session: AsyncSession, cache: Cache, user: User, body: CheckoutIn) -> Order:
    """Turn the caller's cart into a pending order, taking its stock, in one transaction."""
    lines = await cart_service.take_all(session, user.id)
    if not lines:
        raise ValidationFailed("The cart is empty.")
    levels = await inventory.take_for_order(session, lines)
    currencies = {level.currency for level in levels}
    if len(currencies) > 1:
        raise ValidationFailed(
            "The cart mixes currencies; check out each currency separately.",
            details={"currencies": sorted(currencies)},
        )
    items = [
        OrderItem(
            product_id=level.product_id,
            name=level.name,
            sku=level.sku,
            quantity=lines[level.product_id],
            unit_price=level.price,
            line_total=level.price * lines[level.product_id],
        )
        for level in levels
    ]
    total = sum((item.line_total for item in items), Decimal("0.00"))
    if total > MAX_AMOUNT:
        raise ValidationFailed(f"An order total may not exceed {MAX_AMOUNT}.")
    order = Order(
        user_id=user.id,
        status="pending",
        payment_status="pending",
        total_amount=total,
        currency=currencies.pop(),
        shipping_address=body.shipping_address.model_dump(),
        billing_address=body.billing_address.model_dump() if body.billing_address else None,
    )
    order = await OrderRepository(session).add(order, items)
    await inventory.record_order_movements(
        session, levels, lines, order_id=order.id, user_id=user.id
    )
    await inventory.invalidate_catalog(session, cache)
    log.info("order_created", order_id=order.id, user_id=user.id, lines=len(items))
    return order


# --------------------------------------------------------------------------- reading


async def list_own(
    session: AsyncSession, user: User, params: PageParams
) -> tuple[list[Order], int]:
    return await OrderRepository(session).page(params.offset, params.page_size, user_id=user.id)


async def list_all(
    session: AsyncSession, params: PageParams, status: str | None
) -> tuple[list[Order], int]:
    return await OrderRepository(session).page(params.offset, params.page_size, status=status)


async def get_order(session: AsyncSession, order_id: int, user_id: int | None) -> Order:
    """The order with its items; 404 when it is missing or (with `user_id`) not that user's."""
    order = await OrderRepository(session).get(order_id)
    if order is None or (user_id is not None and order.user_id != user_id):
        raise NotFound("Order not found.")
    return order


async def get_visible(session: AsyncSession, user: User, order_id: int) -> Order:
    """An order the caller may see: their own, or any for an admin (others' answer 404)."""
    return await get_order(session, order_id, None if user.is_superuser else user.id)


async def get_own(session: AsyncSession, user: User, order_id: int) -> Order:
    return await get_order(session, order_id, user.id)


async def placed_per_day(session: AsyncSession, days: DayRange) -> dict[date, int]:
    """Orders placed per UTC day of the range (days without orders left out)."""
    return await OrderRepository(session).placed_per_day(days)


async def sales_per_product(
    session: AsyncSession, days: DayRange
) -> dict[int, tuple[int, Decimal]]:
    """Units and revenue per product in the paid, shipped or delivered orders placed in the
    range (cancelled and fully refunded orders sold nothing)."""
    return await OrderRepository(session).sales_per_product(days)


async def sales_per_day(session: AsyncSession, days: DayRange) -> list[DaySales]:
    """Units and revenue per UTC day and product in the paid, shipped or delivered orders placed
    in the range (cancelled and fully refunded orders sold nothing)."""
    return await OrderRepository(session).sales_per_day(days)


async def days_with_pending_orders(session: AsyncSession, days: DayRange) -> set[date]:
    """Days of the range whose orders are not all settled yet (one is still pending)."""
    return await OrderRepository(session).days_with_pending(days)


async def placed_on(session: AsyncSession, order_id: int) -> date | None:
    """The UTC day an order was placed (None for no such order)."""
    return await OrderRepository(session).placed_on(order_id)


async def product_names(session: AsyncSession, product_ids: Iterable[int]) -> dict[int, str]:
    """Names of the products sold in orders, by id (products since deleted left out)."""
    return await OrderRepository(session).product_names(product_ids)


# --------------------------------------------------------------------------- moves


CANCEL_REFUND = "order_cancelled"  # the refund reason of cancelling a paid order


def purpose_of(order_id: int) -> str:
    """The payment purpose of an order (one payment per order)."""
    return f"order:{order_id}"


async def _reload(session: AsyncSession, order_id: int) -> Order:
    order = await OrderRepository(session).get(order_id)
    if order is None:
        raise NotFound("Order not found.")
    return order


async def _moved(session: AsyncSession, order_id: int, to: str, **extra: object) -> None:
    await events.publish(session, f"order_{to}", {"order_id": order_id, **extra})


async def _cancel_pending(
    session: AsyncSession, cache: Cache | None, order_id: int, *, reason: str, user_id: int | None
) -> bool:
    """pending → cancelled with its stock returned and `payment_status` failed (nobody may pay
    it any more: an outbox handler cancels the provider intent); False when it was no longer
    pending."""
    repo = OrderRepository(session)
    if not await repo.move(order_id, "cancelled", ("pending",), payment_status="failed"):
        return False
    await inventory.return_for_order(
        session, await repo.quantities(order_id), order_id=order_id, reason=reason, user_id=user_id
    )
    await _moved(session, order_id, "cancelled", reason=reason, unpaid=True)
    if cache is not None:
        await inventory.invalidate_catalog(session, cache)
    return True


async def cancel(session: AsyncSession, cache: Cache, actor: User, order_id: int) -> Order:
    """Cancel for the owner or an admin: pending → stock back; paid → full refund + stock back
    (the refund commits its pending record before the provider is called)."""
    order = await get_visible(session, actor, order_id)
    if order.status == "pending" and await _cancel_pending(
        session, cache, order.id, reason="cancel", user_id=actor.id
    ):
        return await _reload(session, order.id)
    order = await _reload(session, order.id)  # it may have moved since we read it
    if order.status == "paid":
        payment = await payments_service.get_by_purpose(session, purpose_of(order.id))
        if payment is None or payment.status != "succeeded":
            raise Conflict("This order has no captured payment to refund.")
        # The refund is announced with this reason; `apply_refund` then cancels the order
        # (stock back) instead of marking it refunded, in the transaction that settles it.
        # One cancel refund per payment: a retry (after a lost answer) carries on with it.
        await payments_service.refund(
            session, payment, None, reason=CANCEL_REFUND, request_key=CANCEL_REFUND
        )
        await inventory.invalidate_catalog(session, cache)
        return await _reload(session, order.id)
    if order.status in state.FINAL:
        raise Conflict(f"The order is already {order.status}.", details={"status": order.status})
    raise state.IllegalTransition(order.status, "cancelled")


async def admin_move(
    session: AsyncSession,
    cache: Cache,
    admin: User,
    order_id: int,
    target: str,
    *,
    carrier: str | None = None,
    tracking_number: str | None = None,
) -> Order:
    """An admin status change along the state machine (shipped with its carrier and tracking
    number, delivered, or cancel)."""
    order = await get_visible(session, admin, order_id)
    repo = OrderRepository(session)
    shipping = {k: v for k, v in (("carrier", carrier), ("tracking_number", tracking_number)) if v}
    if order.status == target:
        # Already there: repeating a PATCH changes nothing, but tracking details may be added.
        if target == "shipped" and shipping:
            await repo.update_shipping(order.id, shipping)
            return await _reload(session, order.id)
        return order
    if target == "cancelled":
        return await cancel(session, cache, admin, order_id)
    if target not in state.ADMIN_TARGETS or not state.can_move(order.status, target):
        raise state.IllegalTransition(order.status, target)
    if not await repo.move(order.id, target, state.sources(target), **shipping):
        current = await _reload(session, order.id)
        raise state.IllegalTransition(current.status, target)
    await _moved(session, order.id, target, **shipping)
    return await _reload(session, order.id)


# --------------------------------------------------------------------------- paying


async def create_payment_intent(session: AsyncSession, user_id: int, order_id: int) -> Payment:
    """The order's one payment intent (404 not the user's order, 409 not pending)."""
    order = await get_order(session, order_id, user_id)
    if order.status != "pending":
        raise Conflict(
            f"The order is {order.status}; only a pending order can be paid.",
            details={"status": order.status},
        )
    return await payments_service.create_payment(
        session,
        user_id=order.user_id,
        amount=order.total_amount,
        currency=order.currency,
        purpose=purpose_of(order.id),
        idempotency_key=f"order:{order.id}:payment_intent",
        order_id=order.id,
        metadata={"order_id": str(order.id)},
    )


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    succeeded: bool
    order: Order
    message: str


async def confirm_payment(session: AsyncSession, user_id: int, order_id: int) -> PaymentOutcome:
    """Ask the provider about the order's payment and apply the answer (failures included)."""
    order = await get_order(session, order_id, user_id)
    payment = await payments_service.get_by_purpose(session, purpose_of(order.id))
    if payment is None or payment.intent_id is None:
        raise PaymentNotCompleted("No payment has been started for this order.")
    if payment.status != "succeeded" and order.status != "pending":
        # Never charge for an order that was cancelled (or expired) meanwhile.
        raise PaymentNotCompleted(f"The order is {order.status}; it can no longer be paid.")
    result = await payments_service.confirm(session, payment)
    return PaymentOutcome(result.succeeded, await _reload(session, order.id), result.message)


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    refund: Refund
    payment: Payment
    order: Order


async def refund(
    session: AsyncSession,
    admin: User,
    order_id: int,
    amount: Decimal | None,
    *,
    idempotency_key: str | None = None,
) -> RefundOutcome:
    """Admin refund of an order's payment, full (`amount` None) or partial; 409 over the rest.
    Under an Idempotency-Key, a retry carries on with the refund its first attempt recorded."""
    await get_order(session, order_id, None)
    payment = await payments_service.get_by_purpose(session, purpose_of(order_id))
    if payment is None:
        raise Conflict("This order has no payment to refund.")
    request_key = (
        payments_service.request_key_for(admin.id, idempotency_key) if idempotency_key else None
    )
    row, payment = await payments_service.refund(
        session, payment, amount, reason="admin", request_key=request_key
    )
    return RefundOutcome(row, payment, await _reload(session, order_id))


# --------------------------------------------------------------------------- what payments say


async def apply_payment_succeeded(session: AsyncSession, order_id: int) -> Order:
    """pending → paid (payment succeeded). Already paid or later: unchanged. Cancelled: status
    stays, `payment_status` records the capture, and `payment_succeeded_after_cancel` has it
    refunded after the commit."""
    repo = OrderRepository(session)
    if await repo.move(order_id, "paid", state.sources("paid"), payment_status="succeeded"):
        await _moved(session, order_id, "paid")
    elif await repo.set_payment_status(
        order_id, "succeeded", statuses=("cancelled",), payment_from=("pending", "failed")
    ):
        log.warning("payment_for_cancelled_order", order_id=order_id)
        await events.publish(
            session,
            "payment_succeeded_after_cancel",
            {"order_id": order_id, "purpose": purpose_of(order_id)},
        )
    return await _reload(session, order_id)


async def apply_payment_failed(session: AsyncSession, order_id: int) -> Order:
    """A failed attempt: `payment_status` failed, the order stays pending (the buyer may retry)."""
    await OrderRepository(session).set_payment_status(
        order_id, "failed", statuses=("pending",), payment_from=("pending", "failed")
    )
    return await _reload(session, order_id)


async def apply_refund(
    session: AsyncSession,
    order_id: int,
    refunded_total: Decimal,
    captured_total: Decimal,
    *,
    cancel: bool = False,
) -> Order:
    """Record a refund. Full: paid/shipped/delivered → refunded, or paid → cancelled with stock
    returned when `cancel`. Partial: `partially_refunded`. Repeats and late events do nothing."""
    repo = OrderRepository(session)
    if refunded_total < captured_total:
        await repo.set_payment_status(
            order_id,
            "partially_refunded",
            statuses=state.TRANSITIONS.keys(),
            payment_from=("succeeded", "partially_refunded"),
        )
        return await _reload(session, order_id)
    if cancel and await repo.move(order_id, "cancelled", ("paid",), payment_status="refunded"):
        await inventory.return_for_order(
            session,
            await repo.quantities(order_id),
            order_id=order_id,
            reason="cancel",
            user_id=None,
        )
        await _moved(session, order_id, "cancelled", reason="refund", unpaid=False)
    elif await repo.move(
        order_id, "refunded", state.sources("refunded"), payment_status="refunded"
    ):
        await _moved(session, order_id, "refunded")
    else:
        # Cancelled (e.g. paid after expiry) or already refunded: only the payment status moves.
        await repo.set_payment_status(
            order_id,
            "refunded",
            statuses=state.TRANSITIONS.keys(),
            payment_from=("succeeded", "partially_refunded"),
        )
    return await _reload(session, order_id)


# --------------------------------------------------------------------------- jobs


async def expire_unpaid_orders(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    cache: Cache | None = None,
) -> int:
    """Cancel pending orders older than ORDER_PAYMENT_TIMEOUT_MINUTES and return their stock.
    Each order is its own conditional transaction, so two workers never cancel one twice."""
    cutoff = utcnow() - timedelta(minutes=settings.ORDER_PAYMENT_TIMEOUT_MINUTES)
    expired = 0
    while True:
        async with sessionmaker() as session:
            order_ids = await OrderRepository(session).pending_before(cutoff, EXPIRY_BATCH)
            await session.commit()
            for order_id in order_ids:
                if await _cancel_pending(session, cache, order_id, reason="expired", user_id=None):
                    expired += 1
                await commit(session)
        if len(order_ids) < EXPIRY_BATCH:
            break
    if expired:
        log.info("orders_expired", count=expired)
    return expired
