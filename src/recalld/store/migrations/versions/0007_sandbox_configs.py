"""sandbox configs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Letta's sandbox configurations and their environment variables, per organization (services/sandbox_configs.py);
a custom tool's environment starts from the variables of its organization's `local` configuration.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_by_id", sa.String(length=64), nullable=True),
        sa.Column("last_updated_by_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "sandbox_configs",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("config", JSON_TYPE, nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_sandbox_configs")),
        sa.UniqueConstraint("organization_id", "type", name=op.f("uq_sandbox_configs_organization_id_type")),
    )
    op.create_table(
        "sandbox_env_vars",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("sandbox_config_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_sandbox_env_vars")),
        sa.UniqueConstraint(
            "organization_id",
            "sandbox_config_id",
            "key",
            name=op.f("uq_sandbox_env_vars_organization_id_sandbox_config_id_key"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "sandbox_config_id"],
            ["sandbox_configs.organization_id", "sandbox_configs.id"],
            name=op.f("fk_sandbox_env_vars_organization_id_sandbox_configs"),
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("sandbox_env_vars")
    op.drop_table("sandbox_configs")
