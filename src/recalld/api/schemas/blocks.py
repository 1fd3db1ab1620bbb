"""Core memory blocks (contract 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from .types import BlockText, Bool, Int32, JSONObject, Name, RequestModel, ResponseModel, Text

# The widths of the blocks table's columns (store/schema.py): a longer value is refused with 422 naming the
# field instead of failing in PostgreSQL.
TemplateName = Annotated[Text, Field(max_length=512)]
RefId = Annotated[Text, Field(max_length=128)]


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
    template_name: TemplateName | None = None
    project_id: RefId | None = None
    template_id: RefId | None = None
    base_template_id: RefId | None = None
    deployment_id: RefId | None = None
    entity_id: RefId | None = None
    preserve_on_migration: Bool | None = None


class BlockUpdate(RequestModel):
    """A partial update: only the fields sent change."""

    label: Name | None = None
    value: BlockText | None = None
    limit: Int32 | None = Field(default=None, ge=1)
    description: Text | None = None
    # Letta types these two as plain booleans: null is refused (422 naming the field), not stored into a
    # NOT NULL column; a field left out is not changed (the route applies only the fields sent).
    read_only: Bool = False
    metadata: JSONObject | None = None
    tags: list[Text] | None = None
    hidden: Bool | None = None
    is_template: Bool = False
    template_name: TemplateName | None = None
    project_id: RefId | None = None
    template_id: RefId | None = None
    base_template_id: RefId | None = None
    deployment_id: RefId | None = None
    entity_id: RefId | None = None
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
