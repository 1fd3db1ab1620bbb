"""org tool limits

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Per-organization overrides of the tool sandbox's wall time, memory and process count (contract R23,
services/limits.py). NULL means "the setting's default", as for the other columns of org_limits.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("org_limits") as batch:
        batch.add_column(sa.Column("tool_timeout_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("tool_memory_mb", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tool_max_procs", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("org_limits") as batch:
        batch.drop_column("tool_max_procs")
        batch.drop_column("tool_memory_mb")
        batch.drop_column("tool_timeout_s")
