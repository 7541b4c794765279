"""Payments (for orders and credit purchases), refunds and received webhook events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from sellerdesk.models.base import Base, BigId, IdMixin, TimestampMixin, UTCDateTime, utcnow

PAYMENT_STATES = ("pending", "succeeded", "failed", "canceled")


class Payment(IdMixin, TimestampMixin, Base):
    """One provider payment intent; `refunded_amount` never exceeds `amount`."""

    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_within_amount"
        ),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'canceled')", name="status_valid"
        ),
    )

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


class Refund(IdMixin, Base):
    __tablename__ = "refund"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    payment_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("payment.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    provider_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class WebhookEvent(Base):
    """A provider event id applied once: inserted with ON CONFLICT DO NOTHING beside its effect."""

    __tablename__ = "webhook_event"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
