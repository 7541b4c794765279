"""Catalog: categories and products.

Revision ID: 0002_catalog
Revises: 0001_foundation
Create Date: 2026-11-23 09:39:52.072187+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_catalog"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGRAM_COLUMNS = ("name", "description", "sku")


def upgrade() -> None:
    op.create_table(
        "category",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["category.id"],
            name=op.f("fk_category_parent_id_category"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_category")),
        sa.UniqueConstraint("slug", name=op.f("uq_category_slug")),
    )
    with op.batch_alter_table("category", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_category_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "product",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stock_quantity", sa.Integer(), nullable=False),
        sa.Column("low_stock_threshold", sa.Integer(), nullable=False),
        sa.Column(
            "category_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("asin", sa.String(length=10), nullable=True),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "low_stock_threshold >= 0", name=op.f("ck_product_low_stock_threshold_non_negative")
        ),
        sa.CheckConstraint("price >= 0", name=op.f("ck_product_price_non_negative")),
        sa.CheckConstraint(
            "stock_quantity >= 0", name=op.f("ck_product_stock_quantity_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["category.id"],
            name=op.f("fk_product_category_id_category"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product")),
        sa.UniqueConstraint("sku", name=op.f("uq_product_sku")),
    )
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_product_asin"), ["asin"], unique=False)
        batch_op.create_index(batch_op.f("ix_product_category_id"), ["category_id"], unique=False)
        batch_op.create_index("ix_product_name_id", ["name", "id"], unique=False)
        batch_op.create_index("ix_product_price_id", ["price", "id"], unique=False)
        batch_op.create_index("ix_product_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_product_stock_quantity", ["stock_quantity"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # `q` is a case-insensitive substring match (ILIKE '%q%'); trigram GIN indexes serve it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for column in TRIGRAM_COLUMNS:
            op.execute(
                f"CREATE INDEX ix_product_{column}_trgm ON product "
                f"USING gin ({column} gin_trgm_ops)"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in TRIGRAM_COLUMNS:
            op.execute(f"DROP INDEX IF EXISTS ix_product_{column}_trgm")
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_index("ix_product_stock_quantity")
        batch_op.drop_index("ix_product_created_at_id")
        batch_op.drop_index("ix_product_price_id")
        batch_op.drop_index("ix_product_name_id")
        batch_op.drop_index(batch_op.f("ix_product_category_id"))
        batch_op.drop_index(batch_op.f("ix_product_asin"))

    op.drop_table("product")
    with op.batch_alter_table("category", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_category_parent_id"))

    op.drop_table("category")
