"""Amazon data: per-user FNSKU/ASIN mappings from FBA inventory reports.

Revision ID: 0006_amazon
Revises: 0005_credits
Create Date: 2026-11-23 10:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_amazon"
down_revision: str | None = "0005_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "amazon_mapping",
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("fnsku", sa.String(length=10), nullable=False),
        sa.Column("asin", sa.String(length=10), nullable=False),
        sa.Column("sku", sa.String(length=200), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_amazon_mapping_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amazon_mapping")),
        sa.UniqueConstraint("user_id", "fnsku", name=op.f("uq_amazon_mapping_user_id_fnsku")),
    )
    with op.batch_alter_table("amazon_mapping", schema=None) as batch_op:
        batch_op.create_index("ix_amazon_mapping_user_id_asin", ["user_id", "asin"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("amazon_mapping", schema=None) as batch_op:
        batch_op.drop_index("ix_amazon_mapping_user_id_asin")
    op.drop_table("amazon_mapping")
