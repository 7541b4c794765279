"""Which email each event sends, to whom, with what: one outbox handler per kind.

Each handler reads what it needs in a short transaction, renders, then sends outside any
transaction; every (event, recipient) is sent once (`outbox.once`), with a deterministic
Message-ID. Everything comes from EMAIL_FROM; each kind has its own subject.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk import outbox
from sellerdesk.credits import service as credits_service
from sellerdesk.events import Event, OutboxContext, OutboxHandler
from sellerdesk.models import Order
from sellerdesk.notifications import mailer
from sellerdesk.notifications.mailer import Email
from sellerdesk.orders import service as orders_service
from sellerdesk.users import service as users_service

Builder = Callable[[AsyncSession, OutboxContext, Event], Awaitable[list[Email]]]

CANCEL_REASONS = {
    "cancel": "it was cancelled at your request",
    "expired": "it was not paid in time",
    "refund": "it was cancelled and refunded in full",
}


async def _send_all(ctx: OutboxContext, event: Event, build: Builder) -> None:
    async with ctx.sessionmaker() as session:
        emails = await build(session, ctx, event)
        await session.commit()
    for email in emails:

        async def send(email: Email = email) -> None:
            await mailer.send(ctx.settings, email)

        await outbox.once(ctx, event, f"email:{email.kind}:{email.to.lower()}", send)


async def _user_email(session: AsyncSession, user_id: Any) -> str | None:
    user = await users_service.get(session, int(user_id)) if user_id is not None else None
    return user.email if user is not None else None


async def _order(session: AsyncSession, event: Event) -> tuple[Order, str] | None:
    order = await orders_service.get_order(session, int(event.payload["order_id"]), None)
    email = await _user_email(session, order.user_id)
    return (order, email) if email else None


def _email(
    ctx: OutboxContext, event: Event, kind: str, to: str, subject: str, **context: Any
) -> Email:
    return mailer.render(
        ctx.settings, kind=kind, event_id=event.id, to=to, subject=subject, **context
    )


# --------------------------------------------------------------------------- orders


async def _order_confirmation(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    found = await _order(s, e)
    if found is None:
        return []
    order, to = found
    subject = f"Order #{order.id} confirmed: {order.total_amount:.2f} {order.currency.upper()}"
    return [_email(ctx, e, "order_confirmation", to, subject, order=order)]


async def _order_shipped(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    found = await _order(s, e)
    if found is None:
        return []
    order, to = found
    subject = f"Order #{order.id} has shipped"
    return [_email(ctx, e, "order_shipped", to, subject, order=order)]


async def _order_cancelled(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    found = await _order(s, e)
    if found is None:
        return []
    order, to = found
    reason = CANCEL_REASONS.get(str(e.payload.get("reason")), "it was cancelled")
    subject = f"Order #{order.id} cancelled"
    return [_email(ctx, e, "order_cancelled", to, subject, order=order, reason=reason)]


# --------------------------------------------------------------------------- payments


def _what_for(payload: dict[str, Any]) -> str:
    if payload.get("order_id") is not None:
        return f"order #{payload['order_id']}"
    return "your credit purchase"


async def _payment_receipt(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    p = e.payload
    if p.get("order_id") is None:
        return []  # a credit purchase gets its own receipt (credits_purchased)
    to = await _user_email(s, p["user_id"])
    if to is None:
        return []
    subject = f"Payment receipt: {Decimal(p['amount']):.2f} {p['currency'].upper()}"
    return [_email(ctx, e, "payment_receipt", to, subject, payment=p, what=_what_for(p))]


async def _refund_notice(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    p = e.payload
    to = await _user_email(s, p["user_id"])
    if to is None:
        return []
    amount = Decimal(p.get("refunded_now") or p["refunded_amount"])
    subject = f"Refund of {amount:.2f} {p['currency'].upper()} for {_what_for(p)}"
    return [
        _email(ctx, e, "refund_notice", to, subject, payment=p, refunded=amount, what=_what_for(p))
    ]


# --------------------------------------------------------------------------- stock, credits, users


async def _low_stock_alert(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    p = e.payload
    subject = f"Low stock: {p['sku']} {p['name']} ({p['stock']} left)"
    return [
        _email(ctx, e, "low_stock_alert", to, subject, product=p)
        for to in await users_service.active_admin_emails(s)
    ]


async def _credit_purchase_receipt(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    p = e.payload
    to = await _user_email(s, p["user_id"])
    if to is None:
        return []
    balance = (await credits_service.balance_of(s, int(p["user_id"]))).balance
    subject = f"Receipt: {p['credits']} credits"
    return [_email(ctx, e, "credit_purchase_receipt", to, subject, purchase=p, balance=balance)]


async def _low_credit_warning(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    p = e.payload
    to = await _user_email(s, p["user_id"])
    if to is None:
        return []
    subject = f"Low credit balance: {p['balance']} credits left"
    return [_email(ctx, e, "low_credit_warning", to, subject, alert=p)]


async def _password_changed(s: AsyncSession, ctx: OutboxContext, e: Event) -> list[Email]:
    to = await _user_email(s, e.payload["user_id"])
    if to is None:
        return []
    return [_email(ctx, e, "password_changed", to, "Your sellerdesk password was changed")]


# --------------------------------------------------------------------------- the handlers


def _emailer(name: str, build: Builder) -> OutboxHandler:
    """The outbox handler that sends what `build` makes; `name` keys its done-records."""

    async def handle(ctx: OutboxContext, event: Event) -> None:
        await _send_all(ctx, event, build)

    handle.__name__ = handle.__qualname__ = name
    return handle


HANDLERS: dict[str, OutboxHandler] = {
    "order_paid": _emailer("send_order_confirmation", _order_confirmation),
    "order_shipped": _emailer("send_order_shipped", _order_shipped),
    "order_cancelled": _emailer("send_order_cancelled", _order_cancelled),
    "payment_succeeded": _emailer("send_payment_receipt", _payment_receipt),
    "payment_refunded": _emailer("send_refund_notice", _refund_notice),
    "low_stock": _emailer("send_low_stock_alert", _low_stock_alert),
    "credits_purchased": _emailer("send_credit_purchase_receipt", _credit_purchase_receipt),
    "credits_low": _emailer("send_low_credit_warning", _low_credit_warning),
    "password_changed": _emailer("send_password_changed", _password_changed),
}
