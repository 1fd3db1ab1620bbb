"""Path and query parameter types shared by the routers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import AfterValidator

from recalld.api.schemas.types import clean_text
from recalld.ids import id_pattern

AgentId = Annotated[str, Path(pattern=id_pattern("agent"), description="The agent's id (agent-<uuid4>)")]
BlockId = Annotated[str, Path(pattern=id_pattern("block"), description="The block's id (block-<uuid4>)")]
ToolId = Annotated[str, Path(pattern=id_pattern("tool"), description="The tool's id (tool-<uuid4>)")]
BlockLabel = Annotated[str, Path(min_length=1, max_length=512), AfterValidator(clean_text)]

QText = Annotated[str | None, Query(max_length=4096), AfterValidator(lambda v: v if v is None else clean_text(v))]
QTextList = Annotated[
    list[str] | None,
    Query(),
    AfterValidator(lambda v: v if v is None else [clean_text(s) for s in v]),
]
Cursor = Annotated[str | None, Query(max_length=128, description="An object id; pages relative to it"),
                   AfterValidator(lambda v: v if v is None else clean_text(v))]
Order = Literal["asc", "desc"]


Limit = Annotated[int, Query(ge=1, description="Page size (1–1000; larger values are served as 1000)")]


def split_csv(values: list[str] | None) -> list[str] | None:
    """List parameters accept repeated keys or comma-separated values."""
    if values is None:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]
