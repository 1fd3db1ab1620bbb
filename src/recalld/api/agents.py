"""/v1/agents: create, list, retrieve, modify, delete (contract 2)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from recalld.api.deps import CallerDep, ServicesDep
from recalld.api.params import AgentId, Cursor, Limit, Order, QText, QTextList
from recalld.api.schemas.agents import AgentCreate, AgentState, AgentUpdate
from recalld.api.schemas.common import DeletedMessage, error_responses
from recalld.services.agents import normalize_includes

router = APIRouter(prefix="/v1/agents", tags=["agents"])

OrderBy = Literal["created_at", "updated_at", "last_run_completion"]


@router.post("/", response_model=AgentState, responses=error_responses(400, 404, 409))
async def create_agent(body: AgentCreate, caller: CallerDep, services: ServicesDep) -> dict:
    """Create an agent with its memory blocks, tools and first messages."""
    return await services.agents.create(caller, body.model_dump(exclude_unset=False))


@router.get("/", response_model=list[AgentState], responses=error_responses(400))
async def list_agents(
    caller: CallerDep,
    services: ServicesDep,
    name: QText = None,
    tags: QTextList = None,
    match_all_tags: bool = False,
    query_text: QText = None,
    project_id: QText = None,
    template_id: QText = None,
    base_template_id: QText = None,
    last_stop_reason: QText = None,
    created_by_id: QText = None,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 50,
    order: Order | None = None,
    order_by: OrderBy | None = None,
    ascending: bool | None = None,
    sort_by: OrderBy | None = None,
    include: QTextList = None,
    include_relationships: QTextList = None,
) -> list[dict]:
    """List agents, newest first by default; cursors follow the requested order."""
    asc = order == "asc" if order is not None else bool(ascending)
    return await services.agents.list(
        caller,
        include=normalize_includes(include, include_relationships),
        name=name,
        tags=tags,
        match_all_tags=match_all_tags,
        query_text=query_text,
        project_id=project_id,
        template_id=template_id,
        base_template_id=base_template_id,
        last_stop_reason=last_stop_reason,
        created_by_id=created_by_id,
        before=before,
        after=after,
        limit=limit,
        ascending=asc,
        order_by=order_by or sort_by or "created_at",
    )


@router.get("/count", response_model=int, responses=error_responses())
async def count_agents(caller: CallerDep, services: ServicesDep) -> int:
    """How many agents the organization has."""
    return await services.agents.count(caller)


@router.get("/{agent_id}", response_model=AgentState, responses=error_responses(400, 404))
async def retrieve_agent(
    agent_id: AgentId,
    caller: CallerDep,
    services: ServicesDep,
    include: QTextList = None,
    include_relationships: QTextList = None,
) -> dict:
    """An agent; blocks, tools and tags only when `include` asks for them (as Letta does for 1.x clients)."""
    return await services.agents.retrieve(caller, agent_id, normalize_includes(include, include_relationships))


@router.patch("/{agent_id}", response_model=AgentState, responses=error_responses(400, 404, 409))
async def modify_agent(agent_id: AgentId, body: AgentUpdate, caller: CallerDep, services: ServicesDep) -> dict:
    """Change the fields sent; nothing else."""
    return await services.agents.update(caller, agent_id, body.model_dump(exclude_unset=True))


@router.delete("/{agent_id}", response_model=DeletedMessage, responses=error_responses(404))
async def delete_agent(agent_id: AgentId, caller: CallerDep, services: ServicesDep) -> dict:
    """Delete the agent and everything only it owns; shared blocks stay."""
    await services.agents.delete(caller, agent_id)
    return {"message": f"Agent id={agent_id} successfully deleted"}


@router.get("/{agent_id}/core-memory", include_in_schema=False)
async def legacy_core_memory(agent_id: AgentId, caller: CallerDep, services: ServicesDep) -> dict:
    state = await services.agents.retrieve(caller, agent_id, {"agent.blocks"})
    return state["memory"]


_ = Annotated, Query  # re-exported names used by type checkers only
