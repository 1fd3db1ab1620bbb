"""secrets key check

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Agent secrets are encrypted at rest (secrets_box.py). This table holds one token sealed with the key that last
sealed them, so an instance started with a key that cannot open it refuses to start.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets_key_checks",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_secrets_key_checks")),
    )


def downgrade() -> None:
    op.drop_table("secrets_key_checks")
