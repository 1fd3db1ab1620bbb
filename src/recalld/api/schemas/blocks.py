"""Core memory blocks (contract 3)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .types import BlockText, Bool, Int32, JSONObject, Name, RequestModel, ResponseModel, Text


class BlockCreate(RequestModel):
    label: Name
    # The SDK requires a value; the server turns an explicit null into "".
    value: BlockText | None = ""
    limit: Int32 | None = Field(default=None, ge=1)
    description: Text | None = None
    read_only: Bool = False
    metadata: JSONObject | None = None
    tags: list[Text] | None = None
    hidden: Bool | None = None
    is_template: Bool = False
    template_name: Text | None = None
    project_id: Text | None = None
    template_id: Text | None = None
    base_template_id: Text | None = None
    deployment_id: Text | None = None
    entity_id: Text | None = None
    preserve_on_migration: Bool | None = None


class BlockUpdate(RequestModel):
    """A partial update: only the fields sent change."""

    label: Name | None = None
    value: BlockText | None = None
    limit: Int32 | None = Field(default=None, ge=1)
    description: Text | None = None
    read_only: Bool | None = None
    metadata: JSONObject | None = None
    tags: list[Text] | None = None
    hidden: Bool | None = None
    is_template: Bool | None = None
    template_name: Text | None = None
    project_id: Text | None = None
    template_id: Text | None = None
    base_template_id: Text | None = None
    deployment_id: Text | None = None
    entity_id: Text | None = None
    preserve_on_migration: Bool | None = None


class Block(ResponseModel):
    id: str
    label: str
    value: str
    limit: int
    description: str | None = None
    read_only: bool = False
    metadata: dict = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    hidden: bool | None = None
    is_template: bool = False
    template_name: str | None = None
    project_id: str | None = None
    template_id: str | None = None
    base_template_id: str | None = None
    deployment_id: str | None = None
    entity_id: str | None = None
    preserve_on_migration: bool | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
