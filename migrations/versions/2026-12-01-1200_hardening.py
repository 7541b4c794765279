"""Hardening: token versions (password change / deactivation ends every token), API key count.

Revision ID: 0009_hardening
Revises: 0008_crash_safety
Create Date: 2026-12-01 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_hardening"
down_revision: str | None = "0008_crash_safety"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("api_key_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_user_api_key_count_non_negative"), "api_key_count >= 0"
        )
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )
    # Existing keys count against the new cap.
    op.execute(
        'UPDATE "user" SET api_key_count = (SELECT count(*) FROM api_key '
        'WHERE api_key.user_id = "user".id AND api_key.revoked_at IS NULL)'
    )


def downgrade() -> None:
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.drop_column("token_version")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_api_key_count_non_negative"), type_="check")
        batch_op.drop_column("api_key_count")
        batch_op.drop_column("token_version")
