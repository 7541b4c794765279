"""Credits: accounts, ledger, packs, pricing, purchases and API keys.

Revision ID: 0005_credits
Revises: 0004_payments
Create Date: 2026-11-23 10:20:00+00:00
"""

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0005_credits"
down_revision: str | None = "0004_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_pack",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
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
        sa.CheckConstraint("credits > 0", name=op.f("ck_credit_pack_credits_positive")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_credit_pack_price_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_pack")),
    )
    op.create_table(
        "credit_price",
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.CheckConstraint("credits >= 0", name=op.f("ck_credit_price_credits_non_negative")),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_credit_price")),
    )
    op.create_table(
        "api_key",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_api_key_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_user_id"), ["user_id"], unique=False)
    op.create_table(
        "credit_account",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_purchased", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_spent", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_credit_account_balance_non_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_credit_account_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_credit_account")),
    )
    op.create_table(
        "credit_ledger",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("endpoint", sa.String(length=100), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('purchase', 'charge', 'refund', 'grant', 'adjustment')",
            name=op.f("ck_credit_ledger_kind_valid"),
        ),
        sa.CheckConstraint(
            "balance_after >= 0", name=op.f("ck_credit_ledger_balance_after_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_credit_ledger_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_credit_ledger_idempotency_key")),
    )
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_credit_ledger_user_id_id", ["user_id", "id"], unique=False)
    op.create_table(
        "credit_purchase",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pack_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("credits_refunded", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
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
            ["pack_id"],
            ["credit_pack.id"],
            name=op.f("fk_credit_purchase_pack_id_credit_pack"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payment.id"],
            name=op.f("fk_credit_purchase_payment_id_payment"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_credit_purchase_user_id_user"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_purchase")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_credit_purchase_payment_id")),
    )
    with op.batch_alter_table("credit_purchase", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_purchase_user_id"), ["user_id"], unique=False)
    op.create_table(
        "credit_paid_lookup",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_credit_paid_lookup_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "endpoint", "code", name=op.f("pk_credit_paid_lookup")),
    )
    _insert_defaults()


# A fresh installation (migrations only, no seed) offers these packs and this pricing.
DEFAULT_PACKS = (
    ("Starter: 100 credits", 100, Decimal("9.00")),
    ("Standard: 1,000 credits", 1_000, Decimal("49.00")),
    ("Pro: 10,000 credits", 10_000, Decimal("299.00")),
)
DEFAULT_PRICES = (
    ("asin_lookup", 1, "POST /api/v1/product/asin, per lookup"),
    ("fnsku_conversion", 1, "POST /api/v1/conversion/fnsku[/batch], per resolved code"),
)


def _insert_defaults() -> None:
    pack = sa.table(
        "credit_pack",
        sa.column("name", sa.String),
        sa.column("credits", sa.BigInteger),
        sa.column("price", sa.Numeric(12, 2)),
        sa.column("currency", sa.String),
        sa.column("is_active", sa.Boolean),
    )
    price = sa.table(
        "credit_price",
        sa.column("endpoint", sa.String),
        sa.column("credits", sa.Integer),
        sa.column("description", sa.String),
    )
    op.bulk_insert(
        pack,
        [
            {"name": n, "credits": c, "price": p, "currency": "usd", "is_active": True}
            for n, c, p in DEFAULT_PACKS
        ],
    )
    op.bulk_insert(
        price, [{"endpoint": e, "credits": c, "description": d} for e, c, d in DEFAULT_PRICES]
    )


def downgrade() -> None:
    op.drop_table("credit_paid_lookup")
    op.drop_table("credit_purchase")
    op.drop_table("credit_ledger")
    op.drop_table("credit_account")
    op.drop_table("api_key")
    op.drop_table("credit_price")
    op.drop_table("credit_pack")
