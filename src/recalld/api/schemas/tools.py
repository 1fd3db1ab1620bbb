"""Tools (contract 6)."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from .types import Bool, Int, JSONObject, RequestModel, ResponseModel, Text


class ToolCreate(RequestModel):
    """Create or upsert a tool from Python source; tool bodies are strict (unknown fields are 422)."""

    model_config = ConfigDict(extra="forbid")

    source_code: Text
    description: Text | None = None
    tags: list[Text] | None = None
    source_type: Text | None = "python"
    json_schema: JSONObject | None = None
    args_json_schema: JSONObject | None = None
    return_char_limit: Int = Field(default=50_000, ge=1, le=1_000_000)
    pip_requirements: list[JSONObject] | None = None
    npm_requirements: list[JSONObject] | None = None
    default_requires_approval: Bool | None = None
    enable_parallel_execution: Bool | None = False
    metadata_: JSONObject | None = None
    project_id: Text | None = None


class ToolUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    source_code: Text | None = None
    description: Text | None = None
    tags: list[Text] | None = None
    source_type: Text | None = None
    json_schema: JSONObject | None = None
    args_json_schema: JSONObject | None = None
    return_char_limit: Int | None = Field(default=None, ge=1, le=1_000_000)
    pip_requirements: list[JSONObject] | None = None
    npm_requirements: list[JSONObject] | None = None
    default_requires_approval: Bool | None = None
    enable_parallel_execution: Bool | None = None
    metadata_: JSONObject | None = None
    project_id: Text | None = None


class Tool(ResponseModel):
    id: str
    name: str | None = None
    tool_type: str | None = None
    description: str | None = None
    source_type: str | None = None
    source_code: str | None = None
    json_schema: dict | None = None
    args_json_schema: dict | None = None
    return_char_limit: int | None = None
    pip_requirements: list | None = None
    npm_requirements: list | None = None
    default_requires_approval: bool | None = None
    enable_parallel_execution: bool | None = None
    tags: list[str] = Field(default_factory=list)
    metadata_: dict | None = None
    project_id: str | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
