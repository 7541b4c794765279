"""Amazon data: per-user FNSKU/ASIN mappings from FBA inventory reports.

Revision ID: 0006_amazon
Revises: 0005_credits
Create Date: 2026-11-23 10:30:00+00:00
"""

from collections.abc import Sequence

revision: str = "0006_amazon"
down_revision: str | None = "0005_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled in by the amazon work of issue 7


def downgrade() -> None:
    pass
