"""Closed days of the admin stats, rolled up: a year of `GET /admin/stats` reads ~365 rows.

- `stats_day`: orders placed, money captured and refunded, credits sold, per UTC day and
  currency, written by the `roll_up_stats` job once a day can no longer change.
- `stats_day_product`: units and revenue per product in the sold orders placed that day.
- `stats_day_stale`: days whose sold orders changed after they were rolled up (a late refund or
  cancel); read live until the job rolls them up again.

Empty at first: the job fills them; until it has, every day is computed live as before.

Revision ID: 0012_stats_rollup
Revises: 0011_dashboard
Create Date: 2026-12-07 02:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_stats_rollup"
down_revision: str | None = "0011_dashboard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stats_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("orders", sa.BigInteger(), nullable=False),
        sa.Column("captured", sa.Numeric(14, 2), nullable=False),
        sa.Column("refunded", sa.Numeric(14, 2), nullable=False),
        sa.Column("credits_sold", sa.BigInteger(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "currency", name=op.f("pk_stats_day")),
    )
    op.create_table(
        "stats_day_product",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", BIG_ID, nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.Numeric(14, 2), nullable=False),
        sa.PrimaryKeyConstraint("day", "product_id", name=op.f("pk_stats_day_product")),
    )
    op.create_table(
        "stats_day_stale",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_stats_day_stale")),
    )


def downgrade() -> None:
    op.drop_table("stats_day_stale")
    op.drop_table("stats_day_product")
    op.drop_table("stats_day")
