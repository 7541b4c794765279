"""Checkout and the order lifecycle; every status change goes through `orders.state`.

The payments domain calls `get_order_for_payment`, `apply_payment_succeeded`,
`apply_payment_failed` and `apply_refund`; each is idempotent and only moves state forward.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sellerdesk.cart.repository import CartRepository
from sellerdesk.config import Settings
from sellerdesk.db import commit
from sellerdesk.errors import Conflict, NotFound, ValidationFailed
from sellerdesk.events import record_event
from sellerdesk.inventory import service as inventory
from sellerdesk.kit.cache import Cache
from sellerdesk.kit.money import MAX_AMOUNT
from sellerdesk.kit.pagination import PageParams
from sellerdesk.models import Order, OrderItem, User
from sellerdesk.models.base import utcnow
from sellerdesk.orders import state
from sellerdesk.orders.repository import OrderRepository
from sellerdesk.orders.schemas import CheckoutIn

log = structlog.get_logger(__name__)

EXPIRY_BATCH = 100


# --------------------------------------------------------------------------- checkout


async def checkout(session: AsyncSession, cache: Cache, user: User, body: CheckoutIn) -> Order:
    """Turn the caller's cart into a pending order, taking its stock, in one transaction."""
    lines = await CartRepository(session).take_all(user.id)
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


async def get_order_for_payment(session: AsyncSession, order_id: int, user_id: int | None) -> Order:
    """The order with its items; 404 when it is missing or (with `user_id`) not that user's."""
    order = await OrderRepository(session).get(order_id)
    if order is None or (user_id is not None and order.user_id != user_id):
        raise NotFound("Order not found.")
    return order


async def get_visible(session: AsyncSession, user: User, order_id: int) -> Order:
    """An order the caller may see: their own, or any for an admin (others' answer 404)."""
    return await get_order_for_payment(session, order_id, None if user.is_superuser else user.id)


async def get_own(session: AsyncSession, user: User, order_id: int) -> Order:
    return await get_order_for_payment(session, order_id, user.id)


# --------------------------------------------------------------------------- moves


async def _reload(session: AsyncSession, order_id: int) -> Order:
    order = await OrderRepository(session).get(order_id)
    if order is None:
        raise NotFound("Order not found.")
    return order


async def _moved(session: AsyncSession, order_id: int, to: str, **extra: Any) -> None:
    await record_event(session, f"order_{to}", {"order_id": order_id, **extra})


async def _cancel_pending(
    session: AsyncSession, cache: Cache | None, order_id: int, *, reason: str, user_id: int | None
) -> bool:
    """pending → cancelled with its stock returned; False when it was no longer pending."""
    repo = OrderRepository(session)
    if not await repo.move(order_id, "cancelled", ("pending",)):
        return False
    await inventory.return_for_order(
        session, await repo.quantities(order_id), order_id=order_id, reason=reason, user_id=user_id
    )
    await _moved(session, order_id, "cancelled", reason=reason)
    if cache is not None:
        await inventory.invalidate_catalog(session, cache)
    return True


RefundForCancel = Callable[[AsyncSession, Order], Awaitable[Any]]


def payments_refund_hook() -> RefundForCancel | None:
    """The payments domain's refund hook, once that domain exists in this tree."""
    try:
        payments = importlib.import_module("sellerdesk.payments.service")
    except ModuleNotFoundError:
        return None
    hook: RefundForCancel | None = getattr(payments, "refund_order_for_cancel", None)
    return hook


async def cancel(session: AsyncSession, cache: Cache, actor: User, order_id: int) -> Order:
    """Cancel for the owner or an admin: pending → stock back; paid → full refund + stock back."""
    order = await get_visible(session, actor, order_id)
    if order.status == "pending" and await _cancel_pending(
        session, cache, order.id, reason="cancel", user_id=actor.id
    ):
        return await _reload(session, order.id)
    order = await _reload(session, order.id)  # it may have moved since we read it
    if order.status == "paid":
        refund = payments_refund_hook()
        if refund is None:
            raise Conflict(
                "Cancelling a paid order needs a refund through the payment provider, "
                "which is not available yet.",
                details={"status": order.status},
            )
        await refund(session, order)
        await inventory.invalidate_catalog(session, cache)
        return await _reload(session, order.id)
    if order.status in state.FINAL:
        raise Conflict(f"The order is already {order.status}.", details={"status": order.status})
    raise state.IllegalTransition(order.status, "cancelled")


async def admin_move(
    session: AsyncSession, cache: Cache, admin: User, order_id: int, target: str
) -> Order:
    """An admin status change along the state machine (shipped, delivered, or cancel)."""
    order = await get_visible(session, admin, order_id)
    if order.status == target:
        return order  # already there: repeating a PATCH changes nothing
    if target == "cancelled":
        return await cancel(session, cache, admin, order_id)
    if target not in state.ADMIN_TARGETS or not state.can_move(order.status, target):
        raise state.IllegalTransition(order.status, target)
    if not await OrderRepository(session).move(order.id, target, state.sources(target)):
        current = await _reload(session, order.id)
        raise state.IllegalTransition(current.status, target)
    await _moved(session, order.id, target)
    return await _reload(session, order.id)


# --------------------------------------------------------------------------- payments hooks


async def apply_payment_succeeded(session: AsyncSession, order_id: int) -> Order:
    """pending → paid (payment succeeded). Already paid or later: unchanged. Cancelled: status
    stays, `payment_status` records the capture, and the caller refunds it."""
    repo = OrderRepository(session)
    if await repo.move(order_id, "paid", state.sources("paid"), payment_status="succeeded"):
        await _moved(session, order_id, "paid")
    else:
        await repo.set_payment_status(
            order_id, "succeeded", statuses=("cancelled",), payment_from=("pending", "failed")
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
    cache: Cache | None = None,
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
        await _moved(session, order_id, "cancelled", reason="refund")
        if cache is not None:
            await inventory.invalidate_catalog(session, cache)
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
