"""The tables. Every table carries organization_id and every key that identifies a row starts with it,
so a table can be distributed (sharded) by organization without changing a constraint."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from recalld.store.types import JSONType, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(64)


def _stamps() -> list[Column]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


# A reference table: small, read by every shard; its name is unique across the whole deployment.
organizations = Table(
    "organizations",
    metadata,
    Column("organization_id", ID, primary_key=True),
    Column("name", String(255), nullable=False),
    *_stamps(),
    UniqueConstraint("name"),
)

users = Table(
    "users",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("name", String(255), nullable=False),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    ForeignKeyConstraint(["organization_id"], ["organizations.organization_id"], ondelete="CASCADE"),
)

# Keys name their organization in clear text (so the router can find its shard) and are stored hashed.
api_keys = Table(
    "api_keys",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("key_hash", String(128), nullable=False),
    Column("name", String(255), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "key_hash"),
    ForeignKeyConstraint(["organization_id", "user_id"], ["users.organization_id", "users.id"], ondelete="CASCADE"),
)

agents = Table(
    "agents",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("name", String(512), nullable=False),
    Column("agent_type", String(64), nullable=False),
    Column("system", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("metadata", JSONType, nullable=True),
    Column("llm_config", JSONType, nullable=False),
    Column("embedding_config", JSONType, nullable=True),
    Column("model_settings", JSONType, nullable=True),
    Column("compaction_settings", JSONType, nullable=True),
    Column("response_format", JSONType, nullable=True),
    Column("tool_rules", JSONType, nullable=False),
    Column("message_buffer_autoclear", Boolean, nullable=False, default=False),
    Column("timezone", String(64), nullable=False),
    Column("hidden", Boolean, nullable=True),
    Column("project_id", String(128), nullable=True),
    Column("template_id", String(128), nullable=True),
    Column("base_template_id", String(128), nullable=True),
    Column("enable_sleeptime", Boolean, nullable=True),
    Column("secrets", JSONType, nullable=True),
    Column("max_files_open", Integer, nullable=True),
    Column("per_file_view_window_char_limit", Integer, nullable=True),
    # The fence: the highest message sequence number committed for this agent (docs/ARCHITECTURE.md).
    Column("last_seq", BigInteger, nullable=False, default=0),
    # The in-context window: system message, then the summary (if any), then seq >= context_start_seq.
    Column("system_message_id", ID, nullable=True),
    Column("summary_message_id", ID, nullable=True),
    Column("context_start_seq", BigInteger, nullable=False, default=1),
    Column("last_run_completion", UTCDateTime(), nullable=True),
    Column("last_run_duration_ms", BigInteger, nullable=True),
    Column("last_stop_reason", String(64), nullable=True),
    Column("created_by_id", ID, nullable=True),
    Column("last_updated_by_id", ID, nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    Index(None, "organization_id", "created_at", "id"),
    Index(None, "organization_id", "name"),
)

agent_tags = Table(
    "agent_tags",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("tag", String(512), nullable=False),
    PrimaryKeyConstraint("organization_id", "agent_id", "tag"),
    ForeignKeyConstraint(["organization_id", "agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"),
    Index(None, "organization_id", "tag"),
)

blocks = Table(
    "blocks",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("label", String(512), nullable=False),
    Column("value", Text, nullable=False),
    Column("limit", Integer, nullable=False),
    Column("description", Text, nullable=True),
    Column("read_only", Boolean, nullable=False, default=False),
    Column("metadata", JSONType, nullable=True),
    Column("tags", JSONType, nullable=True),
    Column("hidden", Boolean, nullable=True),
    Column("is_template", Boolean, nullable=False, default=False),
    Column("template_name", String(512), nullable=True),
    Column("project_id", String(128), nullable=True),
    Column("template_id", String(128), nullable=True),
    Column("base_template_id", String(128), nullable=True),
    Column("deployment_id", String(128), nullable=True),
    Column("entity_id", String(128), nullable=True),
    Column("preserve_on_migration", Boolean, nullable=True),
    Column("created_by_id", ID, nullable=True),
    Column("last_updated_by_id", ID, nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    Index(None, "organization_id", "created_at", "id"),
    Index(None, "organization_id", "label"),
)

# The label is copied here so that "one block per label per agent" is a constraint, not a hope.
agent_blocks = Table(
    "agent_blocks",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("block_id", ID, nullable=False),
    Column("label", String(512), nullable=False),
    PrimaryKeyConstraint("organization_id", "agent_id", "block_id"),
    UniqueConstraint("organization_id", "agent_id", "label"),
    ForeignKeyConstraint(["organization_id", "agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["organization_id", "block_id"], ["blocks.organization_id", "blocks.id"], ondelete="CASCADE"),
    Index(None, "organization_id", "block_id"),
)

tools = Table(
    "tools",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("name", String(255), nullable=False),
    Column("tool_type", String(64), nullable=False),
    Column("description", Text, nullable=True),
    Column("source_type", String(32), nullable=True),
    Column("source_code", Text, nullable=True),
    Column("json_schema", JSONType, nullable=True),
    Column("args_json_schema", JSONType, nullable=True),
    Column("return_char_limit", Integer, nullable=False),
    Column("pip_requirements", JSONType, nullable=True),
    Column("npm_requirements", JSONType, nullable=True),
    Column("default_requires_approval", Boolean, nullable=True),
    Column("enable_parallel_execution", Boolean, nullable=True),
    Column("tags", JSONType, nullable=True),
    Column("metadata", JSONType, nullable=True),
    Column("project_id", String(128), nullable=True),
    Column("created_by_id", ID, nullable=True),
    Column("last_updated_by_id", ID, nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "name"),
    Index(None, "organization_id", "created_at", "id"),
)

agent_tools = Table(
    "agent_tools",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("tool_id", ID, nullable=False),
    PrimaryKeyConstraint("organization_id", "agent_id", "tool_id"),
    ForeignKeyConstraint(["organization_id", "agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["organization_id", "tool_id"], ["tools.organization_id", "tools.id"], ondelete="CASCADE"),
    Index(None, "organization_id", "tool_id"),
)

# The history. (agent_id, seq) is the cursor of every page: any depth is an index range read.
messages = Table(
    "messages",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", JSONType, nullable=True),
    Column("name", String(255), nullable=True),
    Column("tool_calls", JSONType, nullable=True),
    Column("tool_call_id", String(255), nullable=True),
    Column("tool_returns", JSONType, nullable=True),
    Column("otid", String(64), nullable=True),
    Column("sender_id", String(128), nullable=True),
    Column("run_id", ID, nullable=True),
    Column("step_id", ID, nullable=True),
    Column("model", String(255), nullable=True),
    Column("is_err", Boolean, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "agent_id", "seq"),
    ForeignKeyConstraint(["organization_id", "agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"),
)

# A run is one request's turn; it exists (status created/running) before its first model call.
runs = Table(
    "runs",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("status", String(16), nullable=False),
    Column("background", Boolean, nullable=True),
    Column("metadata", JSONType, nullable=True),
    Column("request_config", JSONType, nullable=True),
    Column("stop_reason", String(64), nullable=True),
    # Sends are idempotent by Idempotency-Key or by the input's otid (contract R9).
    Column("idempotency_key", String(255), nullable=True),
    Column("input_otid", String(255), nullable=True),
    Column("lease_holder", String(255), nullable=True),
    Column("usage", JSONType, nullable=True),
    # The recorded response, returned again to a retried send.
    Column("result", JSONType, nullable=True),
    Column("ttft_ns", BigInteger, nullable=True),
    Column("total_duration_ns", BigInteger, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    # Set by a cancel request on any instance; the instance running the turn stops at its next step.
    Column("cancel_requested_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "agent_id", "idempotency_key"),
    UniqueConstraint("organization_id", "agent_id", "input_otid"),
    Index(None, "organization_id", "agent_id", "created_at"),
    Index(None, "organization_id", "status", "created_at"),
    ForeignKeyConstraint(["organization_id", "agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"),
)

# One model call of a run.
steps = Table(
    "steps",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("run_id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("status", String(16), nullable=False),
    Column("stop_reason", String(64), nullable=True),
    Column("provider_name", String(64), nullable=True),
    Column("model", String(255), nullable=True),
    Column("model_handle", String(255), nullable=True),
    Column("model_endpoint", String(1024), nullable=True),
    Column("context_window_limit", BigInteger, nullable=True),
    Column("prompt_tokens", BigInteger, nullable=True),
    Column("completion_tokens", BigInteger, nullable=True),
    Column("total_tokens", BigInteger, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "id"),
    Index(None, "organization_id", "run_id", "created_at"),
    Index(None, "organization_id", "agent_id", "created_at"),
    ForeignKeyConstraint(["organization_id", "agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"),
)

Index("ix_messages_organization_id_run_id", messages.c.organization_id, messages.c.run_id)
Index(
    "ix_messages_organization_id_agent_id_otid",
    messages.c.organization_id,
    messages.c.agent_id,
    messages.c.otid,
)

# --- archival memory --------------------------------------------------------------------------------------
# An archive holds passages; agents search the archives attached to them. An agent's own (default)
# archive names it as owner and goes when the agent goes (contract R19); shared archives only detach.
archives = Table(
    "archives",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("name", String(512), nullable=False),
    Column("description", Text, nullable=True),
    Column("metadata", JSONType, nullable=True),
    Column("embedding_config", JSONType, nullable=True),
    Column("vector_db_provider", String(32), nullable=False),
    Column("owner_agent_id", ID, nullable=True),
    Column("created_by_id", ID, nullable=True),
    Column("last_updated_by_id", ID, nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    # One default archive per agent, so two first inserts racing cannot make two.
    UniqueConstraint("organization_id", "owner_agent_id"),
    ForeignKeyConstraint(
        ["organization_id", "owner_agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"
    ),
    Index(None, "organization_id", "created_at", "id"),
    Index(None, "organization_id", "name"),
)

archive_agents = Table(
    "archive_agents",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("archive_id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    PrimaryKeyConstraint("organization_id", "archive_id", "agent_id"),
    ForeignKeyConstraint(
        ["organization_id", "archive_id"], ["archives.organization_id", "archives.id"], ondelete="CASCADE"
    ),
    ForeignKeyConstraint(
        ["organization_id", "agent_id"], ["agents.organization_id", "agents.id"], ondelete="CASCADE"
    ),
    Index(None, "organization_id", "agent_id"),
)

# A passage keeps its embedding as float32 bytes on every backend (exact search reads these); where
# PostgreSQL has pgvector, columns embedding_384/_1536/_3072 with HNSW indexes are added beside it by
# the migration or at start-up (store/vectors.py), outside this metadata since not every database has them.
passages = Table(
    "passages",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("archive_id", ID, nullable=False),
    Column("text", Text, nullable=False),
    Column("tags", JSONType, nullable=True),
    Column("metadata", JSONType, nullable=True),
    # The model that embedded the passage (its handle) and the vector's length: a search compares
    # the query only with passages of the same model (contract R3).
    Column("embedding_handle", String(255), nullable=False),
    Column("embedding_dim", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("embedding_config", JSONType, nullable=True),
    Column("created_by_id", ID, nullable=True),
    Column("last_updated_by_id", ID, nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    ForeignKeyConstraint(
        ["organization_id", "archive_id"], ["archives.organization_id", "archives.id"], ondelete="CASCADE"
    ),
    Index(None, "organization_id", "archive_id", "created_at", "id"),
)

# Tags of passages as rows, so tag filters are an index look-up in SQL, before the LIMIT.
passage_tags = Table(
    "passage_tags",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("passage_id", ID, nullable=False),
    Column("tag", String(512), nullable=False),
    PrimaryKeyConstraint("organization_id", "passage_id", "tag"),
    ForeignKeyConstraint(
        ["organization_id", "passage_id"], ["passages.organization_id", "passages.id"], ondelete="CASCADE"
    ),
    Index(None, "organization_id", "tag", "passage_id"),
)

# Turn leases when Redis is not there to hold them (coord/pg_lease.py); rows live only while held.
agent_leases = Table(
    "agent_leases",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("agent_id", ID, nullable=False),
    Column("holder", String(255), nullable=False),
    Column("token", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id", "agent_id"),
)

# One row, under the default organization: a token sealed with the key that last sealed every secret
# (secrets_box.py), so an instance given another key refuses to start instead of writing what others cannot read.
secrets_key_checks = Table(
    "secrets_key_checks",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("token", Text, nullable=False),
    *_stamps(),
    PrimaryKeyConstraint("organization_id"),
)

# Letta's sandbox configurations (R23): at most one per organization and type; recalld runs `local` only.
sandbox_configs = Table(
    "sandbox_configs",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("type", String(32), nullable=False),
    Column("config", JSONType, nullable=False),
    Column("created_by_id", ID, nullable=True),
    Column("last_updated_by_id", ID, nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "type"),
)

# Environment variables of a sandbox configuration: the organization's tools see them (values are secrets).
sandbox_env_vars = Table(
    "sandbox_env_vars",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("id", ID, nullable=False),
    Column("sandbox_config_id", ID, nullable=False),
    Column("key", String(255), nullable=False),
    Column("value", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("created_by_id", ID, nullable=True),
    Column("last_updated_by_id", ID, nullable=True),
    *_stamps(),
    PrimaryKeyConstraint("organization_id", "id"),
    UniqueConstraint("organization_id", "sandbox_config_id", "key"),
    ForeignKeyConstraint(
        ["organization_id", "sandbox_config_id"],
        ["sandbox_configs.organization_id", "sandbox_configs.id"],
        ondelete="CASCADE",
    ),
)

# Per-organization overrides of the limits in settings (R22); NULL: the setting's default.
org_limits = Table(
    "org_limits",
    metadata,
    Column("organization_id", ID, nullable=False),
    Column("requests_per_s", Float(), nullable=True),
    Column("burst", Integer(), nullable=True),
    Column("concurrent_turns", Integer(), nullable=True),
    Column("queued_turns", Integer(), nullable=True),
    Column("max_steps", Integer(), nullable=True),
    Column("max_passages", BigInteger(), nullable=True),
    Column("max_storage_mb", BigInteger(), nullable=True),
    Column("max_tool_seconds_per_min", Float(), nullable=True),
    Column("tool_network", Boolean(), nullable=True),
    Column("tool_timeout_s", Float(), nullable=True),
    Column("tool_memory_mb", Integer(), nullable=True),
    Column("tool_max_procs", Integer(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("organization_id"),
)
