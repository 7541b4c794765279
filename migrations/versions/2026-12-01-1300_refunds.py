"""Two-phase refunds: a refund is committed `pending` before the provider is called.

- `payment.refund_reserved`: what pending refunds hold while the provider is asked;
  `refunded_amount` is what the provider refunded. Together they stay within `amount`.
- `refund`: its provider idempotency key (`refund:{id}`), the request that made it (a retry
  carries on with it), the reason it is announced with, and when it was settled; status is
  `pending`, `succeeded` or `failed`.
- Existing refunds were all settled when they were written (the old code kept the provider's
  status, which it had already announced as refunded): they become `succeeded`. Refunds made in
  the provider's dashboard raised `refunded_amount` without a row: each payment gets a
  `provider` row for the difference, so the succeeded rows add up to `refunded_amount`.
- `credit_purchase.idempotency_key`: the Idempotency-Key a purchase was started under (a retry
  of that request resumes it), unique per user.

Revision ID: 0010_refunds
Revises: 0009_hardening
Create Date: 2026-12-01 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_refunds"
down_revision: str | None = "0009_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

payment = sa.table("payment", sa.column("id"), sa.column("refunded_amount", sa.Numeric(12, 2)))
refund = sa.table(
    "refund",
    sa.column("id"),
    sa.column("payment_id"),
    sa.column("amount", sa.Numeric(12, 2)),
    sa.column("status", sa.String()),
    sa.column("reason", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("settled_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "refund_reserved",
                sa.Numeric(precision=12, scale=2),
                server_default="0",
                nullable=False,
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_payment_reserved_within_amount"),
            "refund_reserved >= 0 AND ROUND(refunded_amount + refund_reserved, 2) <= amount",
        )
    with op.batch_alter_table("refund", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_key", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("request_key", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))

    op.execute(
        refund.update()
        .where(refund.c.status.not_in(("succeeded", "failed")))
        .values(status="succeeded")
    )
    op.execute(refund.update().values(settled_at=refund.c.created_at))
    succeeded = (
        sa.select(refund.c.payment_id, sa.func.sum(refund.c.amount).label("total"))
        .where(refund.c.status == "succeeded")
        .group_by(refund.c.payment_id)
        .subquery()
    )
    missing = sa.func.round(payment.c.refunded_amount - sa.func.coalesce(succeeded.c.total, 0), 2)
    op.execute(
        refund.insert().from_select(
            ["payment_id", "amount", "status", "reason", "created_at", "settled_at"],
            sa.select(
                payment.c.id,
                missing,
                sa.literal("succeeded"),
                sa.literal("provider"),
                sa.func.now(),
                sa.func.now(),
            )
            .select_from(payment.outerjoin(succeeded, succeeded.c.payment_id == payment.c.id))
            .where(missing > 0),
        )
    )

    with op.batch_alter_table("refund", schema=None) as batch_op:
        batch_op.create_unique_constraint(op.f("uq_refund_provider_key"), ["provider_key"])
        batch_op.create_check_constraint(
            op.f("ck_refund_status_valid"), "status IN ('pending', 'succeeded', 'failed')"
        )
        batch_op.create_check_constraint(
            op.f("ck_refund_settled_unless_pending"), "(status = 'pending') = (settled_at IS NULL)"
        )
    op.create_index(
        "uq_refund_payment_id_request_key",
        "refund",
        ["payment_id", "request_key"],
        unique=True,
        postgresql_where=sa.text("status <> 'failed'"),
        sqlite_where=sa.text("status <> 'failed'"),
    )
    op.create_index(
        "ix_refund_pending",
        "refund",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )

    with op.batch_alter_table("credit_purchase", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            "uq_credit_purchase_user_id_idempotency_key", ["user_id", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_purchase", schema=None) as batch_op:
        batch_op.drop_constraint("uq_credit_purchase_user_id_idempotency_key", type_="unique")
        batch_op.drop_column("idempotency_key")
    op.drop_index("ix_refund_pending", table_name="refund")
    op.drop_index("uq_refund_payment_id_request_key", table_name="refund")
    # Pending refunds hold money the old schema cannot express: they count as refunded.
    op.execute(refund.delete().where(refund.c.reason == "provider"))
    with op.batch_alter_table("refund", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_refund_settled_unless_pending"), type_="check")
        batch_op.drop_constraint(op.f("ck_refund_status_valid"), type_="check")
        batch_op.drop_constraint(op.f("uq_refund_provider_key"), type_="unique")
        batch_op.drop_column("settled_at")
        batch_op.drop_column("reason")
        batch_op.drop_column("request_key")
        batch_op.drop_column("provider_key")
    op.execute(
        sa.text("UPDATE payment SET refunded_amount = ROUND(refunded_amount + refund_reserved, 2)")
    )
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payment_reserved_within_amount"), type_="check")
        batch_op.drop_column("refund_reserved")
