"""The outbox: domain events get a status, attempts and a next try; which handler ran for which
event; periodic jobs' leases; credit low-balance alerts; an order's carrier and tracking number.

Revision ID: 0007_outbox
Revises: 0006_amazon
Create Date: 2026-12-01 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_outbox"
down_revision: str | None = "0006_amazon"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("domain_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=10), server_default="pending", nullable=False)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "available_at",
                sa.DateTime(timezone=True),
                server_default=sa.func.now(),
                nullable=False,
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_domain_event_status_valid"), "status IN ('pending', 'done', 'failed')"
        )
        batch_op.create_index(
            "ix_domain_event_status_available_at", ["status", "available_at"], unique=False
        )
    # Events written before the outbox existed were never promised to anyone: mark them done
    # so an upgrade does not send a flood of stale emails.
    op.execute(
        sa.text(
            "UPDATE domain_event SET status = 'done', processed_at = created_at "
            "WHERE processed_at IS NULL"
        )
    )

    op.create_table(
        "event_handled",
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("handler", sa.String(length=200), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["domain_event.id"],
            name=op.f("fk_event_handled_event_id_domain_event"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "handler", name=op.f("pk_event_handled")),
    )
    op.create_table(
        "job_run",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.String(length=20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_run")),
    )
    op.create_table(
        "credit_alert",
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=True),
        sa.Column("default_threshold", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "threshold IS NULL OR threshold >= 0",
            name=op.f("ck_credit_alert_threshold_non_negative"),
        ),
        sa.CheckConstraint(
            "default_threshold IS NULL OR default_threshold >= 0",
            name=op.f("ck_credit_alert_default_threshold_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_credit_alert_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_credit_alert")),
    )
    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carrier", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("tracking_number", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.drop_column("tracking_number")
        batch_op.drop_column("carrier")
    op.drop_table("credit_alert")
    op.drop_table("job_run")
    op.drop_table("event_handled")
    with op.batch_alter_table("domain_event", schema=None) as batch_op:
        batch_op.drop_index("ix_domain_event_status_available_at")
        batch_op.drop_constraint(op.f("ck_domain_event_status_valid"), type_="check")
        batch_op.drop_column("available_at")
        batch_op.drop_column("last_error")
        batch_op.drop_column("attempts")
        batch_op.drop_column("status")
