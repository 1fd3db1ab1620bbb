"""Rendering stored rows into the Letta object shapes the API returns."""

from __future__ import annotations

from collections.abc import Iterable

BLOCK_FIELDS = (
    "id",
    "label",
    "value",
    "limit",
    "description",
    "read_only",
    "hidden",
    "is_template",
    "template_name",
    "project_id",
    "template_id",
    "base_template_id",
    "deployment_id",
    "entity_id",
    "preserve_on_migration",
    "created_by_id",
    "last_updated_by_id",
    "created_at",
    "updated_at",
)

TOOL_FIELDS = (
    "id",
    "name",
    "tool_type",
    "description",
    "source_type",
    "source_code",
    "json_schema",
    "args_json_schema",
    "return_char_limit",
    "pip_requirements",
    "npm_requirements",
    "default_requires_approval",
    "enable_parallel_execution",
    "project_id",
    "created_by_id",
    "last_updated_by_id",
    "created_at",
    "updated_at",
)

AGENT_FIELDS = (
    "id",
    "name",
    "agent_type",
    "system",
    "llm_config",
    "embedding_config",
    "model_settings",
    "compaction_settings",
    "response_format",
    "description",
    "metadata",
    "tool_rules",
    "message_buffer_autoclear",
    "timezone",
    "hidden",
    "project_id",
    "template_id",
    "base_template_id",
    "enable_sleeptime",
    "max_files_open",
    "per_file_view_window_char_limit",
    "last_run_completion",
    "last_run_duration_ms",
    "last_stop_reason",
    "created_by_id",
    "last_updated_by_id",
    "created_at",
    "updated_at",
)


def block_view(row: dict) -> dict:
    out = {k: row.get(k) for k in BLOCK_FIELDS}
    out["read_only"] = bool(row.get("read_only"))
    out["is_template"] = bool(row.get("is_template"))
    out["metadata"] = row.get("metadata") or {}
    out["tags"] = row.get("tags") or []
    # Letta reports null creators on blocks.
    out["created_by_id"] = None
    out["last_updated_by_id"] = None
    return out


def tool_view(row: dict) -> dict:
    out = {k: row.get(k) for k in TOOL_FIELDS}
    out["tags"] = row.get("tags") or []
    out["metadata_"] = row.get("metadata")
    return out


def agent_view(
    row: dict,
    *,
    blocks: Iterable[dict] = (),
    tools: Iterable[dict] = (),
    tags: Iterable[str] = (),
    message_ids: Iterable[str] = (),
) -> dict:
    out = {k: row.get(k) for k in AGENT_FIELDS}
    block_list = [block_view(b) for b in blocks]
    out["model"] = (row.get("llm_config") or {}).get("handle")
    out["embedding"] = (row.get("embedding_config") or {}).get("handle") if row.get("embedding_config") else None
    out["tool_rules"] = row.get("tool_rules") or []
    out["blocks"] = block_list
    out["memory"] = {
        "agent_type": row["agent_type"],
        "git_enabled": False,
        "blocks": block_list,
        "file_blocks": [],
        "prompt_template": "",
    }
    out["tools"] = [tool_view(t) for t in tools]
    out["tags"] = list(tags)
    out["message_ids"] = list(message_ids)
    out["sources"] = []
    out["identities"] = []
    out["identity_ids"] = []
    out["tool_exec_environment_variables"] = []
    out["secrets"] = [{"key": k, "value": v} for k, v in (row.get("secrets") or {}).items()]
    out["pending_approval"] = None
    out["multi_agent_group"] = None
    out["managed_group"] = None
    out["deployment_id"] = None
    out["entity_id"] = None
    return out
