"""org limits

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Per-organization overrides of the limits in settings (contract R22, services/limits.py). A NULL column means
"the setting's default", so changing a default reaches every organization that did not override it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "org_limits",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("requests_per_s", sa.Float(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("concurrent_turns", sa.Integer(), nullable=True),
        sa.Column("queued_turns", sa.Integer(), nullable=True),
        sa.Column("max_steps", sa.Integer(), nullable=True),
        sa.Column("max_passages", sa.BigInteger(), nullable=True),
        sa.Column("max_storage_mb", sa.BigInteger(), nullable=True),
        sa.Column("max_tool_seconds_per_min", sa.Float(), nullable=True),
        sa.Column("tool_network", sa.Boolean(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_org_limits")),
    )


def downgrade() -> None:
    op.drop_table("org_limits")
