"""Cart, orders, stock movements and idempotency keys.

Revision ID: 0003_orders
Revises: 0002_catalog
Create Date: 2026-11-23 10:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "0003_orders"
down_revision: str | None = "0002_catalog"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled in by the orders issue


def downgrade() -> None:
    pass
