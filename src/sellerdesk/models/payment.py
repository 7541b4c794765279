"""Payments (for orders and credit purchases), refunds and received webhook events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, event, select, text
from sqlalchemy.orm import Mapped, column_property, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from sellerdesk.models.base import Base, BigId, IdMixin, TimestampMixin, UTCDateTime, utcnow
from sellerdesk.models.order import Order

PAYMENT_STATES = ("pending", "succeeded", "failed", "canceled")
REFUND_STATES = ("pending", "succeeded", "failed")


class Payment(IdMixin, TimestampMixin, Base):
    """One provider payment intent.

    `refunded_amount` is what the provider refunded (the sum of its succeeded refund rows);
    `refund_reserved` what pending refunds hold while the provider is asked (the sum of its
    pending rows). Together they never exceed `amount`.
    """

    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_within_amount"
        ),
        # round(…, 2): SQLite keeps NUMERIC as binary floats, where 0.1 + 0.2 > 0.3.
        CheckConstraint(
            "refund_reserved >= 0 AND ROUND(refunded_amount + refund_reserved, 2) <= amount",
            name="reserved_within_amount",
        ),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'canceled')", name="status_valid"
        ),
        # The reconciler looks for payments still pending after N minutes.
        Index("ix_payment_status_created_at", "status", "created_at"),
        # Money captured per day (admin stats).
        Index("ix_payment_captured_at", "captured_at"),
    )

    # What the payment is for ("order:12", "credit_purchase:7"): one payment per purpose.
    purpose: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    provider: Mapped[str] = mapped_column(String(20), nullable=False)
    intent_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    client_secret: Mapped[str | None] = mapped_column(String(500), nullable=True)
    order_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("order.id", ondelete="RESTRICT"), unique=True, nullable=True
    )
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    refunded_amount: Mapped[Decimal] = mapped_column(
        Numeric(12, 2), nullable=False, default=Decimal("0.00")
    )
    # When it moved to `succeeded` (the day its money counts as revenue); NULL until then.
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    refund_reserved: Mapped[Decimal] = mapped_column(
        Numeric(12, 2), nullable=False, default=Decimal("0.00"), server_default="0"
    )


class Refund(IdMixin, Base):
    """One refund of a payment, made in two phases: committed `pending` (its amount reserved on
    the payment) before the provider is called with `provider_key` (`refund:{id}`), then settled
    `succeeded` or `failed` by the provider's answer. Refunds the provider reports that we did
    not make (its dashboard) are recorded `succeeded` with reason `provider` and no key.

    `request_key` names the request that made it (`idempotency:` and the sha256 of an admin's
    Idempotency-Key, `order_cancelled`, `refund_after_cancel`): a retry of that request finds it
    and carries on with it.
    """

    __tablename__ = "refund"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_refund_created_at", "created_at"),  # money refunded per day (admin stats)
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_valid"),
        CheckConstraint(
            "(status = 'pending') = (settled_at IS NULL)", name="settled_unless_pending"
        ),
        # One live refund per request of a payment (a failed one may be tried again).
        Index(
            "uq_refund_payment_id_request_key",
            "payment_id",
            "request_key",
            unique=True,
            postgresql_where=text("status <> 'failed'"),
            sqlite_where=text("status <> 'failed'"),
        ),
        # The settle job looks for refunds still pending after a while.
        Index(
            "ix_refund_pending",
            "created_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    payment_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("payment.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    provider_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    provider_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # What the refund is announced with (`payment_refunded`'s reason): admin, order_cancelled...
    reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookEvent(Base):
    """A provider event id applied once: inserted with ON CONFLICT DO NOTHING beside its effect."""

    __tablename__ = "webhook_event"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


# Order JSON shows its payment intent id: a correlated subquery (served by the unique index on
# payment.order_id) loaded with every Order, so no order code has to ask the payments domain.
# A new order has no payment: its value is None from the start and is not expired by the
# INSERT, so reading it never needs a (sync, impossible under asyncio) lazy load.
Order.payment_intent_id = column_property(
    select(Payment.intent_id)
    .where(Payment.order_id == Order.id)
    .correlate_except(Payment)
    .scalar_subquery(),
    expire_on_flush=False,
)


@event.listens_for(Order, "init")
def _new_order_has_no_intent(target: Order, args: Any, kwargs: Any) -> None:
    set_committed_value(target, "payment_intent_id", None)
