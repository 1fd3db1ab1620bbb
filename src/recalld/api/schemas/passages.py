"""Archival memory: passages, search results and archives (contract 5)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StrictStr, WithJsonSchema

from .models import EmbeddingConfig, EmbeddingConfigIn
from .types import JSONObject, Name, RequestModel, ResponseModel, Text

# RFC 3339 date-time, the offset optional (the SDK sends naive datetimes without one).
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})?")


def _utc_datetime(text: str) -> datetime:
    """An ISO 8601 date-time; without a zone it is UTC. An offset that leaves the calendar is refused."""
    if not _DATE_TIME.fullmatch(text):
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-24T15:30:00Z")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"expected an ISO 8601 date-time: {e}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as e:
        raise ValueError("datetime is out of range once converted to UTC") from e


# A date-time given as a string only: a JSON number is not taken as a timestamp (contract R5).
DateTimeIn = Annotated[
    StrictStr, AfterValidator(_utc_datetime), WithJsonSchema({"type": "string", "format": "date-time"})
]
Tag = Annotated[Text, Field(max_length=512)]


class PassageCreate(RequestModel):
    text: Text = Field(description="Text to write to archival memory (one passage; not chunked)")
    tags: list[Tag] | None = None
    created_at: DateTimeIn | None = Field(default=None, description="When the memory was made (default: now)")


class Passage(ResponseModel):
    id: str
    text: str
    embedding: list[float] | None = None
    embedding_config: EmbeddingConfig | None = None
    archive_id: str | None = None
    source_id: str | None = None
    file_id: str | None = None
    file_name: str | None = None
    metadata: dict = Field(default_factory=dict)
    tags: list[str] | None = None
    is_deleted: bool = False
    organization_id: str | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SearchResult(ResponseModel):
    id: str
    timestamp: str = Field(description="When the passage was made, ISO 8601 in the agent's time zone")
    content: str
    tags: list[str] = Field(default_factory=list)


class SearchResponse(ResponseModel):
    results: list[SearchResult]
    count: int = Field(description="How many results were returned")


class ArchiveCreate(RequestModel):
    name: Name
    description: Text | None = None
    embedding: Text | None = Field(default=None, description="Embedding model handle for the archive's passages")
    embedding_config: EmbeddingConfigIn | None = None


class ArchiveUpdate(RequestModel):
    name: Name | None = None
    description: Text | None = None


class Archive(ResponseModel):
    id: str
    name: str
    description: str | None = None
    metadata: dict | None = None
    embedding_config: EmbeddingConfig | None = None
    vector_db_provider: str | None = "native"
    organization_id: str | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: datetime
    updated_at: datetime | None = None


class ArchivePassageCreate(RequestModel):
    text: Text
    metadata: JSONObject | None = None
    tags: list[Tag] | None = None
    created_at: DateTimeIn | None = None


class ArchivePassageBatch(RequestModel):
    passages: list[ArchivePassageCreate] = Field(min_length=1, max_length=1000)
