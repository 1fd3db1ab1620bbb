"""run cancel requests

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

A cancel request is recorded on the run, so the instance running the turn sees it whichever instance the
request reached (services/turns.py: cancel).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "cancel_requested_at")
