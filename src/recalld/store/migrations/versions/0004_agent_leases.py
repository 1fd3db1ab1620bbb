"""agent leases

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

The PostgreSQL lease table that serializes an agent's turns across instances when Redis is not
configured or is down (coord/pg_lease.py). Created on SQLite too, where it stays empty.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_leases",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "agent_id", name=op.f("pk_agent_leases")),
    )


def downgrade() -> None:
    op.drop_table("agent_leases")
