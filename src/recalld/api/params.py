"""Path and query parameter types shared by the routers."""

from __future__ import annotations

from typing import Annotated, Literal, get_args, get_origin

from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
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
Cursor = Annotated[
    str | None,
    Query(max_length=128, description="An object id; pages relative to it"),
    AfterValidator(lambda v: v if v is None else clean_text(v)),
]
Order = Literal["asc", "desc"]


Limit = Annotated[int, Query(ge=1, description="Page size (1–1000; larger values are served as 1000)")]


def split_csv(values: list[str] | None) -> list[str] | None:
    """List parameters accept repeated keys or comma-separated values."""
    if values is None:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


async def reject_repeated_scalars(request: Request) -> None:
    """A scalar query parameter given twice is ambiguous input: 422, instead of silently taking one (R5)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    errors = []
    for param in _all_query_params(dependant):
        if len(request.query_params.getlist(param.alias)) > 1 and not _is_sequence(param):
            errors.append(
                {
                    "type": "repeated_scalar",
                    "loc": ("query", param.alias),
                    "msg": "given more than once, but takes a single value",
                    "input": None,
                }
            )
    if errors:
        raise RequestValidationError(errors)


def _all_query_params(dependant):
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _all_query_params(sub)


def _is_sequence(param) -> bool:
    annotation = param.field_info.annotation
    return get_origin(annotation) in (list, tuple, set) or any(
        get_origin(arg) in (list, tuple, set) for arg in get_args(annotation)
    )
