"""runs and steps

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Runs (one request's turn, with its idempotency key and recorded result) and steps (one model call
each); indexes for a run's messages and for otid look-ups.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "runs",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("background", sa.Boolean(), nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=True),
        sa.Column("request_config", JSON_TYPE, nullable=True),
        sa.Column("stop_reason", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("input_otid", sa.String(length=255), nullable=True),
        sa.Column("lease_holder", sa.String(length=255), nullable=True),
        sa.Column("usage", JSON_TYPE, nullable=True),
        sa.Column("result", JSON_TYPE, nullable=True),
        sa.Column("ttft_ns", sa.BigInteger(), nullable=True),
        sa.Column("total_duration_ns", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_runs_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_runs")),
        sa.UniqueConstraint(
            "organization_id",
            "agent_id",
            "idempotency_key",
            name=op.f("uq_runs_organization_id_agent_id_idempotency_key"),
        ),
        sa.UniqueConstraint(
            "organization_id",
            "agent_id",
            "input_otid",
            name=op.f("uq_runs_organization_id_agent_id_input_otid"),
        ),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_runs_organization_id_agent_id_created_at"),
            ["organization_id", "agent_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_runs_organization_id_status_created_at"),
            ["organization_id", "status", "created_at"],
            unique=False,
        )

    op.create_table(
        "steps",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stop_reason", sa.String(length=64), nullable=True),
        sa.Column("provider_name", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("model_handle", sa.String(length=255), nullable=True),
        sa.Column("model_endpoint", sa.String(length=1024), nullable=True),
        sa.Column("context_window_limit", sa.BigInteger(), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=True),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_steps_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_steps")),
    )
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_steps_organization_id_agent_id_created_at"),
            ["organization_id", "agent_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_steps_organization_id_run_id_created_at"),
            ["organization_id", "run_id", "created_at"],
            unique=False,
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_organization_id_agent_id_otid", ["organization_id", "agent_id", "otid"], unique=False
        )
        batch_op.create_index("ix_messages_organization_id_run_id", ["organization_id", "run_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_organization_id_run_id")
        batch_op.drop_index("ix_messages_organization_id_agent_id_otid")

    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_steps_organization_id_run_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_steps_organization_id_agent_id_created_at"))

    op.drop_table("steps")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_organization_id_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_runs_organization_id_agent_id_created_at"))

    op.drop_table("runs")
