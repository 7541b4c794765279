"""SQL for payments, refunds and received webhook events; every state move is one statement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.db import insert_for
from sellerdesk.kit.dates import DayRange, as_date, days_having, utc_day
from sellerdesk.models import Payment, Refund, WebhookEvent
from sellerdesk.models.base import utcnow


async def insert_payment(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert a payment unless one exists for its purpose (or order); its id, or None.

    On PostgreSQL a concurrent insert of the same purpose waits for the first transaction and
    then does nothing, so exactly one caller goes on to create the provider intent.
    """
    insert: Any = insert_for(session, Payment)  # PostgreSQL's or SQLite's: both ON CONFLICT
    stmt = insert.values(**values).on_conflict_do_nothing().returning(Payment.id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get(session: AsyncSession, payment_id: int) -> Payment | None:
    stmt = select(Payment).where(Payment.id == payment_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_purpose(session: AsyncSession, purpose: str) -> Payment | None:
    stmt = (
        select(Payment).where(Payment.purpose == purpose).execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_intent(session: AsyncSession, intent_id: str) -> Payment | None:
    stmt = (
        select(Payment)
        .where(Payment.intent_id == intent_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_intent(
    session: AsyncSession, payment_id: int, intent_id: str, client_secret: str | None
) -> None:
    """Record the provider's intent on a payment that has none yet."""
    await session.execute(
        update(Payment)
        .execution_options(synchronize_session=False)
        .where(Payment.id == payment_id, Payment.intent_id.is_(None))
        .values(intent_id=intent_id, client_secret=client_secret)
    )


async def move_status(
    session: AsyncSession, payment_id: int, to: str, allowed_from: Sequence[str]
) -> bool:
    """Move a payment to `to` only from one of `allowed_from`; whether it moved. A move to
    `succeeded` stamps `captured_at` (the day its money counts as revenue)."""
    values: dict[str, Any] = {"status": to}
    if to == "succeeded":
        values["captured_at"] = utcnow()
    stmt = (
        update(Payment)
        .execution_options(synchronize_session=False)
        .where(Payment.id == payment_id, Payment.status.in_(allowed_from))
        .values(**values)
        .returning(Payment.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def lock(session: AsyncSession, payment_id: int) -> Payment | None:
    """The payment as it is now, its row locked until the transaction ends (PostgreSQL; SQLite
    transactions hold the write lock anyway)."""
    stmt = (
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_to_refunded(session: AsyncSession, payment_id: int, amount: Decimal) -> None:
    """Count `amount` as refunded (a provider's refund we did not make; the row is locked)."""
    await session.execute(
        update(Payment)
        .execution_options(synchronize_session=False)
        .where(Payment.id == payment_id)
        .values(refunded_amount=func.round(Payment.refunded_amount + amount, 2))
    )


async def reserve_refund(session: AsyncSession, payment_id: int, amount: Decimal) -> bool:
    """Reserve `amount` of a succeeded payment's refundable rest for a pending refund, atomically;
    False when the payment has not succeeded or less than `amount` is left.

    The row stays locked until the transaction ends, so two concurrent refunds are reserved one
    after the other and together can never exceed the amount.
    """
    # round(…, 2): SQLite keeps NUMERIC as binary floats, where 0.1 + 0.2 > 0.3.
    taken = func.round(Payment.refunded_amount + Payment.refund_reserved + amount, 2)
    stmt = (
        update(Payment)
        .execution_options(synchronize_session=False)
        .where(Payment.id == payment_id, Payment.status == "succeeded", taken <= Payment.amount)
        .values(refund_reserved=func.round(Payment.refund_reserved + amount, 2))
        .returning(Payment.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def confirm_reserved(session: AsyncSession, payment_id: int, amount: Decimal) -> None:
    """A pending refund succeeded: its reserved amount becomes refunded."""
    await session.execute(
        update(Payment)
        .execution_options(synchronize_session=False)
        .where(Payment.id == payment_id)
        .values(
            refund_reserved=func.round(Payment.refund_reserved - amount, 2),
            refunded_amount=func.round(Payment.refunded_amount + amount, 2),
        )
    )


async def release_reserved(session: AsyncSession, payment_id: int, amount: Decimal) -> None:
    """A pending refund failed: its reserved amount is refundable again."""
    await session.execute(
        update(Payment)
        .execution_options(synchronize_session=False)
        .where(Payment.id == payment_id)
        .values(refund_reserved=func.round(Payment.refund_reserved - amount, 2))
    )


async def insert_refund(
    session: AsyncSession,
    payment_id: int,
    amount: Decimal,
    *,
    reason: str | None,
    request_key: str | None,
) -> int | None:
    """A pending refund's id; None when the same request already has a live refund of this
    payment (on PostgreSQL a concurrent one is waited for)."""
    insert: Any = insert_for(session, Refund)
    stmt = (
        insert.values(
            payment_id=payment_id,
            amount=amount,
            status="pending",
            reason=reason,
            request_key=request_key,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(Refund.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_provider_key(session: AsyncSession, refund_id: int, key: str) -> None:
    await session.execute(
        update(Refund)
        .execution_options(synchronize_session=False)
        .where(Refund.id == refund_id)
        .values(provider_key=key)
    )


async def add_provider_refund(session: AsyncSession, payment_id: int, amount: Decimal) -> None:
    """Record a refund the provider reports that we did not make (its dashboard)."""
    now = utcnow()
    session.add(
        Refund(
            payment_id=payment_id,
            amount=amount,
            status="succeeded",
            reason="provider",
            created_at=now,
            settled_at=now,
        )
    )
    await session.flush()


async def get_refund(session: AsyncSession, refund_id: int) -> Refund | None:
    stmt = select(Refund).where(Refund.id == refund_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def refund_for_request(
    session: AsyncSession, payment_id: int, request_key: str
) -> Refund | None:
    """The live (pending or succeeded) refund a request made of a payment."""
    stmt = (
        select(Refund)
        .where(
            Refund.payment_id == payment_id,
            Refund.request_key == request_key,
            Refund.status != "failed",
        )
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class Settled:
    payment_id: int
    amount: Decimal
    reason: str | None


async def settle_refund(
    session: AsyncSession, refund_id: int, status: str, provider_refund_id: str | None
) -> Settled | None:
    """Move a pending refund to `status`; what it was, or None when it was no longer pending
    (settled by someone else: one conditional UPDATE, so it is settled once)."""
    stmt = (
        update(Refund)
        .execution_options(synchronize_session=False)
        .where(Refund.id == refund_id, Refund.status == "pending")
        .values(status=status, provider_refund_id=provider_refund_id, settled_at=utcnow())
        .returning(Refund.payment_id, Refund.amount, Refund.reason)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    return Settled(row[0], Decimal(str(row[1])).quantize(Decimal("0.01")), row[2])


async def stale_pending_refunds(
    session: AsyncSession, before: datetime, limit: int
) -> list[Refund]:
    stmt = (
        select(Refund)
        .where(Refund.status == "pending", Refund.created_at < before)
        .order_by(Refund.created_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def event_recorded(session: AsyncSession, event_id: str) -> bool:
    stmt = select(WebhookEvent.id).where(WebhookEvent.id == event_id)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def record_event(session: AsyncSession, event_id: str, event_type: str) -> bool:
    """Insert a webhook event id; False when it was already applied (or is being applied)."""
    insert: Any = insert_for(session, WebhookEvent)
    stmt = (
        insert.values(id=event_id, type=event_type)
        .on_conflict_do_nothing()
        .returning(WebhookEvent.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def stale_pending_ids(session: AsyncSession, before: datetime, limit: int) -> list[int]:
    stmt = (
        select(Payment.id)
        .where(
            Payment.status == "pending",
            Payment.created_at < before,
            Payment.intent_id.is_not(None),
        )
        .order_by(Payment.created_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def recent_events(session: AsyncSession, limit: int) -> list[WebhookEvent]:
    rows = await session.scalars(
        select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(limit)
    )
    return list(rows)


# Refunds that gave money back; a pending one has not yet, a failed one never will.
_REFUND_COUNTED = ("succeeded",)


def _money(value: Any) -> Decimal:
    # SQLite sums NUMERIC as binary floats: round to the cent through the text form.
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


async def captured_per_day(
    session: AsyncSession, days: DayRange, currency: str
) -> dict[date, Decimal]:
    """Money captured per UTC day (payments by `captured_at`)."""
    day = utc_day(Payment.captured_at)
    rows = await session.execute(
        select(day, func.sum(Payment.amount))
        .where(
            Payment.captured_at >= days.start,
            Payment.captured_at < days.end,
            Payment.currency == currency,
        )
        .group_by(day)
    )
    return {as_date(d): _money(total) for d, total in rows}


async def refunded_per_day(
    session: AsyncSession, days: DayRange, currency: str
) -> dict[date, Decimal]:
    """Money refunded per UTC day (refunds by `created_at`)."""
    day = utc_day(Refund.created_at)
    rows = await session.execute(
        select(day, func.sum(Refund.amount))
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            Refund.created_at >= days.start,
            Refund.created_at < days.end,
            Refund.status.in_(_REFUND_COUNTED),
            Payment.currency == currency,
        )
        .group_by(day)
    )
    return {as_date(d): _money(total) for d, total in rows}


async def days_with_pending_refunds(session: AsyncSession, days: DayRange) -> set[date]:
    """Days of the range with a refund still in flight (its money not yet counted or dropped)."""
    return await days_having(session, Refund.created_at, days, Refund.status == "pending")
