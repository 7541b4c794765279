"""Dashboard and analytics: browser sessions, daily usage, and the indexes behind the stats.

- `browser_session`: a dashboard login (the cookie's token stored as SHA-256), with its expiry
  and the user's token version (a password change ends it, as it ends API tokens).
- `credit_usage`: paid calls answered and their credits per user, UTC day and endpoint, counted
  up as answers commit; filled here from the charges already served (free repeats made before
  this migration were never recorded and cannot be counted).
- `payment.captured_at`: when a payment succeeded (the day its money counts as revenue);
  payments that succeeded before this migration take their last update time.
- Indexes for the per-day figures: orders by `created_at`, payments by `captured_at`, refunds
  by `created_at`, purchase entries of the ledger by `created_at`.

Revision ID: 0011_dashboard
Revises: 0010_refunds
Create Date: 2026-12-01 16:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_dashboard"
down_revision: str | None = "0010_refunds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc_day(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(timezone('UTC', {column}) AS DATE)"
    return f"date({column})"


def upgrade() -> None:
    op.create_table(
        "browser_session",
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_browser_session_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_browser_session_token_hash")),
    )
    op.create_index(
        "ix_browser_session_expires_at", "browser_session", ["expires_at"], unique=False
    )
    op.create_index("ix_browser_session_user_id", "browser_session", ["user_id"], unique=False)

    op.create_table(
        "credit_usage",
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("calls >= 0", name=op.f("ck_credit_usage_calls_non_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_credit_usage_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "day", "endpoint", name=op.f("pk_credit_usage")),
    )
    day = _utc_day("created_at")  # our own SQL text, no input
    backfill = (
        "INSERT INTO credit_usage (user_id, day, endpoint, calls, credits) "  # noqa: S608
        f"SELECT user_id, {day}, endpoint, COUNT(*), SUM(credits) FROM credit_charge "
        f"WHERE outcome = 'served' GROUP BY user_id, {day}, endpoint"
    )
    op.execute(backfill)

    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE payment SET captured_at = updated_at WHERE status = 'succeeded'")
    op.create_index("ix_payment_captured_at", "payment", ["captured_at"], unique=False)
    op.create_index("ix_refund_created_at", "refund", ["created_at"], unique=False)
    op.create_index("ix_order_created_at", "order", ["created_at"], unique=False)
    op.create_index(
        "ix_credit_ledger_purchase_created_at",
        "credit_ledger",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("kind = 'purchase'"),
        sqlite_where=sa.text("kind = 'purchase'"),
    )


def downgrade() -> None:
    op.drop_index("ix_credit_ledger_purchase_created_at", table_name="credit_ledger")
    op.drop_index("ix_order_created_at", table_name="order")
    op.drop_index("ix_refund_created_at", table_name="refund")
    op.drop_index("ix_payment_captured_at", table_name="payment")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_column("captured_at")
    op.drop_table("credit_usage")
    op.drop_index("ix_browser_session_user_id", table_name="browser_session")
    op.drop_index("ix_browser_session_expires_at", table_name="browser_session")
    op.drop_table("browser_session")
