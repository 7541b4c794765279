"""The category tree and products."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from sellerdesk.models.base import Base, BigId, IdMixin, TimestampMixin


class Category(IdMixin, TimestampMixin, Base):
    __tablename__ = "category"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    parent_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("category.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Product(IdMixin, TimestampMixin, Base):
    __tablename__ = "product"
    __table_args__ = (
        CheckConstraint("stock_quantity >= 0", name="stock_quantity_non_negative"),
        CheckConstraint("price >= 0", name="price_non_negative"),
        CheckConstraint("low_stock_threshold >= 0", name="low_stock_threshold_non_negative"),
        # One index per sort of the public listing (id breaks ties) and for `in_stock`; the
        # `q` search is served by pg_trgm GIN indexes that only the migration creates (PostgreSQL).
        Index("ix_product_name_id", "name", "id"),
        Index("ix_product_price_id", "price", "id"),
        Index("ix_product_created_at_id", "created_at", "id"),
        Index("ix_product_stock_quantity", "stock_quantity"),
    )

    name: Mapped[str] = mapped_column(String(300), nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    stock_quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    low_stock_threshold: Mapped[int] = mapped_column(Integer, nullable=False, default=5)
    category_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("category.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    sku: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    asin: Mapped[str | None] = mapped_column(String(10), index=True, nullable=True)
    images: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
