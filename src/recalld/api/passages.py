"""An agent's archival memory: insert, list, search by meaning, delete (contract 5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, StringConstraints

from recalld.api.deps import CallerDep, ServicesDep
from recalld.api.params import AgentId, Cursor, Limit
from recalld.api.schemas.common import DeletedMessage, error_responses
from recalld.api.schemas.passages import Passage, PassageCreate, SearchResponse
from recalld.api.schemas.types import clean_text

router = APIRouter(tags=["archival memory"])

ARCHIVAL = "/v1/agents/{agent_id}/archival-memory"
# Embedding calls a model provider: its failures are 429/502/504 (contract R13).
EMBEDDING_ERRORS = (429, 502, 504)


def _iso_moment(value: str | None) -> str | None:
    """A date (2026-11-24) or date-time; checked here, read in the agent's time zone by the service."""
    if value is None:
        return None
    clean_text(value)
    try:
        datetime.fromisoformat(value)
    except ValueError as e:
        raise ValueError("expected an ISO 8601 date or date-time, e.g. 2026-11-24 or 2026-11-24T15:30:00") from e
    return value


# Query strings are bounded so that a request line stays under the HTTP server's 64 KiB even when every
# character is sent percent-encoded (up to 12 bytes each); a longer line never reaches the application.
SearchTags = Annotated[
    list[Annotated[str, StringConstraints(max_length=256), AfterValidator(clean_text)]] | None,
    Query(max_length=8, description="Only passages with any (or all) of these tags"),
]
QMoment = Annotated[
    str | None,
    Query(max_length=64, description="ISO 8601 date or date-time; without a zone, the agent's time zone"),
    AfterValidator(_iso_moment),
]
MemoryId = Annotated[str, Path(max_length=128, description="The passage's id"), AfterValidator(clean_text)]


@router.post(ARCHIVAL, response_model=list[Passage], responses=error_responses(400, 404, *EMBEDDING_ERRORS))
async def create_passage(agent_id: AgentId, body: PassageCreate, caller: CallerDep, services: ServicesDep) -> list:
    """Insert one passage into the agent's archival memory; it is embedded before it is stored."""
    return await services.passages.insert(caller, agent_id, body.text, body.tags, body.created_at)


@router.get(ARCHIVAL, response_model=list[Passage], responses=error_responses(404))
async def list_passages(
    agent_id: AgentId,
    caller: CallerDep,
    services: ServicesDep,
    after: Cursor = None,
    before: Cursor = None,
    limit: Limit = 100,
    search: Annotated[str | None, Query(max_length=2048, description="Only passages whose text contains this"),
                      AfterValidator(lambda v: v if v is None else clean_text(v))] = None,
    ascending: bool = True,
) -> list:
    """The agent's passages, oldest first by default; `search` keeps those whose text contains it."""
    return await services.passages.list(
        caller, agent_id, after=after, before=before, limit=limit, ascending=ascending, search=search
    )


@router.get(
    ARCHIVAL + "/search", response_model=SearchResponse, responses=error_responses(400, 404, *EMBEDDING_ERRORS)
)
async def search_passages(
    agent_id: AgentId,
    caller: CallerDep,
    services: ServicesDep,
    query: Annotated[str, Query(max_length=2000, description="What to look for, by meaning"),
                     AfterValidator(clean_text)],
    top_k: Annotated[int | None, Query(ge=1, description="Most results to return (default 5)")] = None,
    tags: SearchTags = None,
    tag_match_mode: Literal["any", "all"] = "any",
    start_datetime: QMoment = None,
    end_datetime: QMoment = None,
) -> dict:
    """The passages nearest the query by meaning, nearest first; a blank query finds nothing."""
    results = await services.passages.search(
        caller,
        agent_id,
        query,
        top_k=min(top_k or 5, 1000),
        tags=tags,
        tag_match_mode=tag_match_mode,
        start_datetime=start_datetime,
        end_datetime=end_datetime,
    )
    return {"results": results, "count": len(results)}


@router.delete(ARCHIVAL + "/{memory_id}", response_model=DeletedMessage, responses=error_responses(404))
async def delete_passage(agent_id: AgentId, memory_id: MemoryId, caller: CallerDep, services: ServicesDep) -> dict:
    await services.passages.delete(caller, agent_id, memory_id)
    return {"message": f"Memory id={memory_id} successfully deleted"}
