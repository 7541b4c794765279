"""Per-user FNSKU ↔ ASIN mappings, fed by uploaded FBA inventory reports."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sellerdesk.models.base import Base, BigId, IdMixin, TimestampMixin


class AmazonMapping(IdMixin, TimestampMixin, Base):
    """One of a user's FNSKUs and the ASIN (and SKU, title) it stands for; private to the user."""

    __tablename__ = "amazon_mapping"
    __table_args__ = (
        UniqueConstraint("user_id", "fnsku", name="uq_amazon_mapping_user_id_fnsku"),
        Index("ix_amazon_mapping_user_id_asin", "user_id", "asin"),
    )

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("user.id", ondelete="CASCADE"), nullable=False
    )
    fnsku: Mapped[str] = mapped_column(String(10), nullable=False)
    asin: Mapped[str] = mapped_column(String(10), nullable=False)
    sku: Mapped[str | None] = mapped_column(String(200), nullable=True)
    title: Mapped[str | None] = mapped_column(String(500), nullable=True)
