"""Credit accounts, the append-only ledger, packs, pricing, purchases and API keys."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from sellerdesk.models.base import Base, BigId, IdMixin, TimestampMixin, UTCDateTime, utcnow

LEDGER_KINDS = ("purchase", "charge", "refund", "grant", "adjustment")
CHARGE_OUTCOMES = ("served", "refunded")


class CreditAccount(Base):
    __tablename__ = "credit_account"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_non_negative"),)

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    lifetime_purchased: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    lifetime_spent: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class CreditLedger(IdMixin, Base):
    """Append-only: every change of a balance, with the balance right after it.

    `idempotency_key` is unique per account: an operation applied under a key (a purchase, the
    refund of a charge, a paid call's client `Idempotency-Key`) lands at most once.
    """

    __tablename__ = "credit_ledger"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('purchase', 'charge', 'refund', 'grant', 'adjustment')", name="kind_valid"
        ),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index("ix_credit_ledger_user_id_id", "user_id", "id"),
        # Credits sold per day (admin stats): purchase entries only, by time.
        Index(
            "ix_credit_ledger_purchase_created_at",
            "created_at",
            postgresql_where=text("kind = 'purchase'"),
            sqlite_where=text("kind = 'purchase'"),
        ),
        UniqueConstraint(
            "user_id", "idempotency_key", name="uq_credit_ledger_user_id_idempotency_key"
        ),
    )

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="CASCADE"), nullable=False
    )
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    balance_after: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class CreditCharge(IdMixin, Base):
    """A paid call's charge and what became of it.

    Written with the charge's ledger entry. `outcome` is NULL while the call runs, then moves
    once, by one conditional UPDATE from NULL: `served` (the answer was computed and recorded,
    in the same transaction as the stored `Idempotency-Key` response) or `refunded` (with its
    `refund:{entry_id}` ledger entry, in the same transaction). A charge left NULL longer than
    `CREDITS_SWEEP_AFTER_SECONDS` (its call crashed, was cancelled, or its refund failed) is
    refunded by the sweep. `created_at` is also the `paid_at` of the repeat-window markers it
    wrote, so a refund releases exactly those.
    """

    __tablename__ = "credit_charge"
    __table_args__ = (
        CheckConstraint("credits > 0", name="credits_positive"),
        CheckConstraint("outcome IN ('served', 'refunded')", name="outcome_valid"),
        CheckConstraint("(outcome IS NULL) = (settled_at IS NULL)", name="settled_with_outcome"),
        Index("ix_credit_charge_user_id_idempotency_key", "user_id", "idempotency_key"),
        # The sweep's scan: only unsettled charges, oldest first.
        Index(
            "ix_credit_charge_unsettled",
            "created_at",
            postgresql_where=text("outcome IS NULL"),
            sqlite_where=text("outcome IS NULL"),
        ),
    )

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="CASCADE"), nullable=False
    )
    entry_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("credit_ledger.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    endpoint: Mapped[str] = mapped_column(String(100), nullable=False)
    codes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # sha256 (hex) of the client's Idempotency-Key when the call carried one.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(10), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CreditUsage(Base):
    """A user's paid calls answered 200 and the credits they cost, per UTC day and endpoint.

    One row per (user, day, endpoint), counted up by one upsert in the transaction that
    commits each answer (a free repeat counts with 0 credits, a batch is one call). A charge
    refunded because its call failed never reaches it, so `credits` is that day's charges minus
    refunds; `GET /credits/usage` reads these rows, never the ledger.
    """

    __tablename__ = "credit_usage"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "day", "endpoint"),
        CheckConstraint("calls >= 0", name="calls_non_negative"),
    )

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("user.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    endpoint: Mapped[str] = mapped_column(String(100))
    calls: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class CreditPack(IdMixin, TimestampMixin, Base):
    __tablename__ = "credit_pack"
    __table_args__ = (
        CheckConstraint("credits > 0", name="credits_positive"),
        CheckConstraint("price >= 0", name="price_non_negative"),
    )

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class CreditPrice(Base):
    """Cost in credits of one paid endpoint."""

    __tablename__ = "credit_price"
    __table_args__ = (CheckConstraint("credits >= 0", name="credits_non_negative"),)

    endpoint: Mapped[str] = mapped_column(String(100), primary_key=True)
    credits: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str] = mapped_column(String(255), nullable=False, default="")


class CreditPaidLookup(Base):
    """A code an account paid for: repeats within the repeat window are free.

    Written in the same transaction as the charge, so a refused or refunded charge leaves none.
    """

    __tablename__ = "credit_paid_lookup"
    __table_args__ = (PrimaryKeyConstraint("user_id", "endpoint", "code"),)

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("user.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(64))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class CreditPurchase(IdMixin, TimestampMixin, Base):
    """A pack bought with a payment; credits land once, when the payment succeeds."""

    __tablename__ = "credit_purchase"
    __table_args__ = (
        UniqueConstraint(
            "user_id", "idempotency_key", name="uq_credit_purchase_user_id_idempotency_key"
        ),
    )

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    pack_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("credit_pack.id", ondelete="RESTRICT"), nullable=False
    )
    payment_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("payment.id", ondelete="RESTRICT"), unique=True, nullable=True
    )
    credits: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Credits taken back by refunds so far (partial refunds take back their share).
    credits_refunded: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )
    # pending → completed (credited) → refunded; pending → failed → completed; pending → refunded
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    # sha256 of the Idempotency-Key it was started under: a retry of that request resumes it.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CreditAlert(Base):
    """A user's low-balance warning: sent once each time a charge takes the balance to or below
    the threshold (their own, else 10% of the last pack they bought)."""

    __tablename__ = "credit_alert"
    __table_args__ = (
        CheckConstraint("threshold IS NULL OR threshold >= 0", name="threshold_non_negative"),
        CheckConstraint(
            "default_threshold IS NULL OR default_threshold >= 0",
            name="default_threshold_non_negative",
        ),
    )

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=true()
    )
    threshold: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # set by the user
    default_threshold: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class ApiKey(IdMixin, Base):
    """An API key: only its prefix (for lookup) and a hash are stored."""

    __tablename__ = "api_key"

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
