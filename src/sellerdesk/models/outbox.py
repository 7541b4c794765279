"""The outbox (domain events and which handler ran for each) and the periodic jobs' leases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from sellerdesk.models.base import Base, BigId, IdMixin, UTCDateTime, utcnow

EVENT_STATUSES = ("pending", "done", "failed")


class DomainEvent(IdMixin, Base):
    """Something that happened (`order_paid`, `low_stock`, ...), written in the transaction that
    caused it: the outbox row its after-commit handlers (emails, provider calls) work from."""

    __tablename__ = "domain_event"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done', 'failed')", name="status_valid"),
        # The sweep looks for pending rows whose next try is due.
        Index("ix_domain_event_status_available_at", "status", "available_at"),
    )

    kind: Mapped[str] = mapped_column(String(50), index=True, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(
        String(10), nullable=False, default="pending", server_default="pending"
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When the next try may start; a processor pushes it ahead while it works (its lease).
    available_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now(), nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class EventHandled(Base):
    """One after-commit effect of one event that is done (a handler, or one email of it):
    the unique key that makes running an event twice have one effect."""

    __tablename__ = "event_handled"
    __table_args__ = (PrimaryKeyConstraint("event_id", "handler"),)

    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("domain_event.id", ondelete="CASCADE"), nullable=False
    )
    handler: Mapped[str] = mapped_column(String(200), nullable=False)
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class JobRun(Base):
    """A periodic job's lease (one runner at a time across processes) and its last run."""

    __tablename__ = "job_run"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
