"""Crash safety of paid calls: ledger keys unique per account, and each charge's outcome.

- `credit_ledger.idempotency_key` was unique across all users; it becomes unique per account
  (`user_id, idempotency_key`), so a client `Idempotency-Key` can key a charge: two users'
  keys "1" no longer clash.
- `credit_charge`: one row per paid call's charge with its outcome (NULL while the call runs,
  then `served` or `refunded`); the sweep refunds charges left without one.

Revision ID: 0008_crash_safety
Revises: 0007_outbox
Create Date: 2026-12-01 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_crash_safety"
down_revision: str | None = "0007_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_constraint("uq_credit_ledger_idempotency_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_credit_ledger_user_id_idempotency_key", ["user_id", "idempotency_key"]
        )
    op.create_table(
        "credit_charge",
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("entry_id", BIG_ID, nullable=False),
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("codes", sa.JSON(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.CheckConstraint("credits > 0", name=op.f("ck_credit_charge_credits_positive")),
        sa.CheckConstraint(
            "outcome IN ('served', 'refunded')", name=op.f("ck_credit_charge_outcome_valid")
        ),
        sa.CheckConstraint(
            "(outcome IS NULL) = (settled_at IS NULL)",
            name=op.f("ck_credit_charge_settled_with_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["credit_ledger.id"],
            name=op.f("fk_credit_charge_entry_id_credit_ledger"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_credit_charge_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_charge")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_credit_charge_entry_id")),
    )
    op.create_index(
        "ix_credit_charge_user_id_idempotency_key",
        "credit_charge",
        ["user_id", "idempotency_key"],
        unique=False,
    )
    op.create_index(
        "ix_credit_charge_unsettled",
        "credit_charge",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("outcome IS NULL"),
        sqlite_where=sa.text("outcome IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_credit_charge_unsettled", table_name="credit_charge")
    op.drop_index("ix_credit_charge_user_id_idempotency_key", table_name="credit_charge")
    op.drop_table("credit_charge")
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_constraint("uq_credit_ledger_user_id_idempotency_key", type_="unique")
        batch_op.create_unique_constraint("uq_credit_ledger_idempotency_key", ["idempotency_key"])
