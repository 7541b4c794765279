"""How orders react to events: payments' news moves orders (in the payment's transaction), and
what must reach the payment provider after a commit runs from the outbox."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk import events
from sellerdesk.events import Event, OutboxContext
from sellerdesk.orders import service
from sellerdesk.payments import service as payments_service


def _order_id(event: Event) -> int | None:
    order_id = event.payload.get("order_id")
    return order_id if isinstance(order_id, int) else None


async def on_payment_succeeded(session: AsyncSession, event: Event) -> None:
    if (order_id := _order_id(event)) is not None:
        await service.apply_payment_succeeded(session, order_id)


async def on_payment_failed(session: AsyncSession, event: Event) -> None:
    if (order_id := _order_id(event)) is not None:
        await service.apply_payment_failed(session, order_id)


async def on_payment_refunded(session: AsyncSession, event: Event) -> None:
    if (order_id := _order_id(event)) is not None:
        await service.apply_refund(
            session,
            order_id,
            Decimal(event.payload["refunded_amount"]),
            Decimal(event.payload["amount"]),
            cancel=event.payload.get("reason") == service.CANCEL_REFUND,
        )


async def cancel_payment_of_unpaid_order(ctx: OutboxContext, event: Event) -> None:
    """A cancelled (or expired) unpaid order: cancel its intent at the provider, if it has one."""
    if event.payload.get("unpaid") and (order_id := _order_id(event)) is not None:
        await payments_service.cancel_unpaid(ctx, service.purpose_of(order_id))


async def refund_payment_after_cancel(ctx: OutboxContext, event: Event) -> None:
    """A payment that succeeded after its order was cancelled goes back in full, once: a repeat
    carries on with the refund the first run recorded (same provider key), or finds nothing
    left to refund."""
    payment_id = await _payment_id(ctx, event.payload["purpose"])
    if payment_id is not None:
        await payments_service.refund_rest_once(
            ctx, payment_id, request_key="refund_after_cancel", reason="paid_after_cancel"
        )


async def _payment_id(ctx: OutboxContext, purpose: str) -> int | None:
    async with ctx.sessionmaker() as session:
        payment = await payments_service.get_by_purpose(session, purpose)
        await session.commit()
    return payment.id if payment is not None else None


def register() -> None:
    """Subscribe the orders domain to the events it reacts to."""
    events.on("payment_succeeded", on_payment_succeeded, in_transaction=True)
    events.on("payment_failed", on_payment_failed, in_transaction=True)
    events.on("payment_refunded", on_payment_refunded, in_transaction=True)
    events.on("order_cancelled", cancel_payment_of_unpaid_order, in_transaction=False)
    events.on("payment_succeeded_after_cancel", refund_payment_after_cancel, in_transaction=False)
