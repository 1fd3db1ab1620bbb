"""Agents (contract 2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .blocks import Block, BlockCreate
from .models import EmbeddingConfig, EmbeddingConfigIn, LLMConfig, LLMConfigIn
from .tools import Tool
from .types import Bool, Int, Int32, JSONObject, Name, RequestModel, ResponseModel, Text

AgentType = Literal[
    "memgpt_agent",
    "memgpt_v2_agent",
    "letta_v1_agent",
    "react_agent",
    "workflow_agent",
    "split_thread_agent",
    "sleeptime_agent",
    "voice_convo_agent",
    "voice_sleeptime_agent",
]

ToolRuleType = Literal[
    "run_first",
    "exit_loop",
    "continue_loop",
    "conditional",
    "constrain_child_tools",
    "max_count_per_step",
    "parent_last_tool",
    "required_before_exit",
    "requires_approval",
]


class ToolRule(RequestModel):
    tool_name: Text
    type: ToolRuleType
    prompt_template: Text | None = None
    children: list[Text] | None = None
    child_output_mapping: JSONObject | None = None
    default_child: Text | None = None
    require_output_mapping: Bool | None = None
    max_count_limit: Int | None = None


class InitialMessage(RequestModel):
    role: Literal["user", "system", "assistant"]
    content: Text | list[JSONObject]
    name: Text | None = None
    otid: Text | None = None
    sender_id: Text | None = None


class AgentCreate(RequestModel):
    name: Name | None = None
    agent_type: AgentType = "letta_v1_agent"
    model: Text | None = None
    embedding: Text | None = None
    llm_config: LLMConfigIn | None = None
    embedding_config: EmbeddingConfigIn | None = None
    model_settings: JSONObject | None = None
    context_window_limit: Int | None = Field(default=None, ge=1)
    max_tokens: Int | None = Field(default=None, ge=1)
    max_reasoning_tokens: Int | None = Field(default=None, ge=0)
    enable_reasoner: Bool | None = None
    reasoning: Bool | None = None
    parallel_tool_calls: Bool | None = None
    response_format: JSONObject | None = None
    system: Text | None = None
    memory_blocks: list[BlockCreate] | None = None
    block_ids: list[Text] | None = None
    tools: list[Text] | None = None
    tool_ids: list[Text] | None = None
    include_base_tools: Bool = True
    include_base_tool_rules: Bool | None = None
    tool_rules: list[ToolRule] | None = None
    tags: list[Text] | None = None
    metadata: JSONObject | None = None
    description: Text | None = None
    message_buffer_autoclear: Bool = False
    initial_message_sequence: list[InitialMessage] | None = None
    timezone: Text | None = None
    enable_sleeptime: Bool | None = None
    secrets: dict[str, Text] | None = None
    tool_exec_environment_variables: dict[str, Text] | None = None
    compaction_settings: JSONObject | None = None
    hidden: Bool | None = None
    project_id: Text | None = None
    template_id: Text | None = None
    base_template_id: Text | None = None
    max_files_open: Int32 | None = Field(default=None, ge=0)
    per_file_view_window_char_limit: Int32 | None = Field(default=None, ge=0)


class AgentUpdate(RequestModel):
    """A partial update: only the fields sent change (an explicit null clears where that makes sense)."""

    name: Name | None = None
    system: Text | None = None
    description: Text | None = None
    metadata: JSONObject | None = None
    tags: list[Text] | None = None
    tool_ids: list[Text] | None = None
    block_ids: list[Text] | None = None
    tool_rules: list[ToolRule] | None = None
    message_ids: list[Text] | None = None
    message_buffer_autoclear: Bool | None = None
    model: Text | None = None
    embedding: Text | None = None
    llm_config: LLMConfigIn | None = None
    embedding_config: EmbeddingConfigIn | None = None
    model_settings: JSONObject | None = None
    context_window_limit: Int | None = Field(default=None, ge=1)
    max_tokens: Int | None = Field(default=None, ge=1)
    parallel_tool_calls: Bool | None = None
    reasoning: Bool | None = None
    response_format: JSONObject | None = None
    timezone: Text | None = None
    secrets: dict[str, Text] | None = None
    enable_sleeptime: Bool | None = None
    compaction_settings: JSONObject | None = None
    hidden: Bool | None = None
    last_run_completion: datetime | None = None
    last_run_duration_ms: Int | None = Field(default=None, ge=0)
    last_stop_reason: Text | None = None
    max_files_open: Int32 | None = Field(default=None, ge=0)
    per_file_view_window_char_limit: Int32 | None = Field(default=None, ge=0)
    project_id: Text | None = None
    template_id: Text | None = None
    base_template_id: Text | None = None
    identity_ids: list[Text] | None = None
    folder_ids: list[Text] | None = None
    source_ids: list[Text] | None = None


class Memory(ResponseModel):
    agent_type: str | None = None
    git_enabled: bool = False
    blocks: list[Block] = Field(default_factory=list)
    file_blocks: list[Any] = Field(default_factory=list)
    prompt_template: str = ""


class AgentState(ResponseModel):
    id: str
    name: str
    agent_type: str
    system: str
    llm_config: LLMConfig
    embedding_config: EmbeddingConfig | None = None
    model: str | None = None
    embedding: str | None = None
    model_settings: dict | None = None
    compaction_settings: dict | None = None
    response_format: dict | None = None
    description: str | None = None
    metadata: dict | None = None
    memory: Memory
    blocks: list[Block] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    sources: list[Any] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    tool_rules: list[dict] = Field(default_factory=list)
    message_ids: list[str] = Field(default_factory=list)
    tool_exec_environment_variables: list[Any] = Field(default_factory=list)
    secrets: list[Any] = Field(default_factory=list)
    project_id: str | None = None
    template_id: str | None = None
    base_template_id: str | None = None
    deployment_id: str | None = None
    entity_id: str | None = None
    identity_ids: list[str] = Field(default_factory=list)
    identities: list[Any] = Field(default_factory=list)
    pending_approval: dict | None = None
    message_buffer_autoclear: bool = False
    enable_sleeptime: bool | None = None
    multi_agent_group: dict | None = None
    managed_group: dict | None = None
    last_run_completion: datetime | None = None
    last_run_duration_ms: int | None = None
    last_stop_reason: str | None = None
    timezone: str | None = None
    max_files_open: int | None = None
    per_file_view_window_char_limit: int | None = None
    hidden: bool | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
