"""Payments and Stripe webhook events.

Revision ID: 0004_payments
Revises: 0003_orders
Create Date: 2026-11-23 10:10:00+00:00
"""

from collections.abc import Sequence

revision: str = "0004_payments"
down_revision: str | None = "0003_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled in by the payments issue


def downgrade() -> None:
    pass
