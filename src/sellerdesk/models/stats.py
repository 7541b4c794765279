"""The store's figures of closed days, rolled up so that a year of `GET /admin/stats` reads a
row a day instead of every order line (see `sellerdesk.admin_stats`)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from sellerdesk.models.base import Base, BigId, UTCDateTime, utcnow


class RolledDay(Base):
    """One closed UTC day in one currency: orders placed, money captured and refunded, credits
    sold. Written once by the `roll_up_stats` job, when nothing of that day can change any more
    (no order still pending, no refund still in flight)."""

    __tablename__ = "stats_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders: Mapped[int] = mapped_column(BigInteger, nullable=False)
    captured: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    refunded: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    credits_sold: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rolled_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class RolledDaySales(Base):
    """Units and revenue of one product in the sold (paid, shipped, delivered) orders placed on
    a rolled-up day."""

    __tablename__ = "stats_day_product"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    units: Mapped[int] = mapped_column(Integer, nullable=False)
    revenue: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)


class StaleDay(Base):
    """A rolled-up day that changed after all: an order placed that day was refunded or
    cancelled later. Read as live until the job rolls the day up again and drops this row —
    only if `version` is still the one it read: a change made while it computed marks again."""

    __tablename__ = "stats_day_stale"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)
