"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Organizations, users, API keys, agents (with their fence and context window), blocks, tools and the
message history. Every key that identifies a row starts with organization_id.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON text on SQLite (the same type as recalld.store.types.JSONType).
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "agents",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("agent_type", sa.String(length=64), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=True),
        sa.Column("llm_config", JSON_TYPE, nullable=False),
        sa.Column("embedding_config", JSON_TYPE, nullable=True),
        sa.Column("model_settings", JSON_TYPE, nullable=True),
        sa.Column("compaction_settings", JSON_TYPE, nullable=True),
        sa.Column("response_format", JSON_TYPE, nullable=True),
        sa.Column("tool_rules", JSON_TYPE, nullable=False),
        sa.Column("message_buffer_autoclear", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=True),
        sa.Column("project_id", sa.String(length=128), nullable=True),
        sa.Column("template_id", sa.String(length=128), nullable=True),
        sa.Column("base_template_id", sa.String(length=128), nullable=True),
        sa.Column("enable_sleeptime", sa.Boolean(), nullable=True),
        sa.Column("secrets", JSON_TYPE, nullable=True),
        sa.Column("max_files_open", sa.Integer(), nullable=True),
        sa.Column("per_file_view_window_char_limit", sa.Integer(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("system_message_id", sa.String(length=64), nullable=True),
        sa.Column("summary_message_id", sa.String(length=64), nullable=True),
        sa.Column("context_start_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_run_completion", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_stop_reason", sa.String(length=64), nullable=True),
        sa.Column("created_by_id", sa.String(length=64), nullable=True),
        sa.Column("last_updated_by_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_agents")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agents_organization_id_created_at_id"),
            ["organization_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_agents_organization_id_name"), ["organization_id", "name"], unique=False)

    op.create_table(
        "blocks",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=512), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("metadata", JSON_TYPE, nullable=True),
        sa.Column("tags", JSON_TYPE, nullable=True),
        sa.Column("hidden", sa.Boolean(), nullable=True),
        sa.Column("is_template", sa.Boolean(), nullable=False),
        sa.Column("template_name", sa.String(length=512), nullable=True),
        sa.Column("project_id", sa.String(length=128), nullable=True),
        sa.Column("template_id", sa.String(length=128), nullable=True),
        sa.Column("base_template_id", sa.String(length=128), nullable=True),
        sa.Column("deployment_id", sa.String(length=128), nullable=True),
        sa.Column("entity_id", sa.String(length=128), nullable=True),
        sa.Column("preserve_on_migration", sa.Boolean(), nullable=True),
        sa.Column("created_by_id", sa.String(length=64), nullable=True),
        sa.Column("last_updated_by_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_blocks")),
    )
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_blocks_organization_id_created_at_id"),
            ["organization_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_blocks_organization_id_label"), ["organization_id", "label"], unique=False)

    op.create_table(
        "organizations",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("name", name=op.f("uq_organizations_name")),
    )
    op.create_table(
        "tools",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("tool_type", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source_type", sa.String(length=32), nullable=True),
        sa.Column("source_code", sa.Text(), nullable=True),
        sa.Column("json_schema", JSON_TYPE, nullable=True),
        sa.Column("args_json_schema", JSON_TYPE, nullable=True),
        sa.Column("return_char_limit", sa.Integer(), nullable=False),
        sa.Column("pip_requirements", JSON_TYPE, nullable=True),
        sa.Column("npm_requirements", JSON_TYPE, nullable=True),
        sa.Column("default_requires_approval", sa.Boolean(), nullable=True),
        sa.Column("enable_parallel_execution", sa.Boolean(), nullable=True),
        sa.Column("tags", JSON_TYPE, nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=True),
        sa.Column("project_id", sa.String(length=128), nullable=True),
        sa.Column("created_by_id", sa.String(length=64), nullable=True),
        sa.Column("last_updated_by_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_tools")),
        sa.UniqueConstraint("organization_id", "name", name=op.f("uq_tools_organization_id_name")),
    )
    with op.batch_alter_table("tools", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tools_organization_id_created_at_id"),
            ["organization_id", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "agent_blocks",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("block_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_agent_blocks_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "block_id"],
            ["blocks.organization_id", "blocks.id"],
            name=op.f("fk_agent_blocks_organization_id_blocks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "agent_id", "block_id", name=op.f("pk_agent_blocks")),
        sa.UniqueConstraint(
            "organization_id",
            "agent_id",
            "label",
            name=op.f("uq_agent_blocks_organization_id_agent_id_label"),
        ),
    )
    with op.batch_alter_table("agent_blocks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_blocks_organization_id_block_id"),
            ["organization_id", "block_id"],
            unique=False,
        )

    op.create_table(
        "agent_tags",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_agent_tags_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "agent_id", "tag", name=op.f("pk_agent_tags")),
    )
    with op.batch_alter_table("agent_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_tags_organization_id_tag"), ["organization_id", "tag"], unique=False)

    op.create_table(
        "agent_tools",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("tool_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_agent_tools_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "tool_id"],
            ["tools.organization_id", "tools.id"],
            name=op.f("fk_agent_tools_organization_id_tools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "agent_id", "tool_id", name=op.f("pk_agent_tools")),
    )
    with op.batch_alter_table("agent_tools", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_tools_organization_id_tool_id"), ["organization_id", "tool_id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", JSON_TYPE, nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("tool_calls", JSON_TYPE, nullable=True),
        sa.Column("tool_call_id", sa.String(length=255), nullable=True),
        sa.Column("tool_returns", JSON_TYPE, nullable=True),
        sa.Column("otid", sa.String(length=64), nullable=True),
        sa.Column("sender_id", sa.String(length=128), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("is_err", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_messages_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "organization_id", "agent_id", "seq", name=op.f("uq_messages_organization_id_agent_id_seq")
        ),
    )
    op.create_table(
        "users",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.organization_id"],
            name=op.f("fk_users_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_users")),
    )
    op.create_table(
        "api_keys",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_api_keys_organization_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("organization_id", "key_hash", name=op.f("uq_api_keys_organization_id_key_hash")),
    )


def downgrade() -> None:

    op.drop_table("api_keys")
    op.drop_table("users")
    op.drop_table("messages")
    with op.batch_alter_table("agent_tools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_tools_organization_id_tool_id"))

    op.drop_table("agent_tools")
    with op.batch_alter_table("agent_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_tags_organization_id_tag"))

    op.drop_table("agent_tags")
    with op.batch_alter_table("agent_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_blocks_organization_id_block_id"))

    op.drop_table("agent_blocks")
    with op.batch_alter_table("tools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tools_organization_id_created_at_id"))

    op.drop_table("tools")
    op.drop_table("organizations")
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blocks_organization_id_label"))
        batch_op.drop_index(batch_op.f("ix_blocks_organization_id_created_at_id"))

    op.drop_table("blocks")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_organization_id_name"))
        batch_op.drop_index(batch_op.f("ix_agents_organization_id_created_at_id"))

    op.drop_table("agents")
