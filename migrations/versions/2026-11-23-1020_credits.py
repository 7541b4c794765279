"""Credits ledger, packs, pricing, API keys and Amazon mappings.

Revision ID: 0005_credits
Revises: 0004_payments
Create Date: 2026-11-23 10:20:00+00:00
"""

from collections.abc import Sequence

revision: str = "0005_credits"
down_revision: str | None = "0004_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled in by the credits issue


def downgrade() -> None:
    pass
