"""/v1/blocks and the agent's core memory routes (contract 3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from recalld.api.deps import CallerDep, ServicesDep
from recalld.api.params import AgentId, BlockId, BlockLabel, Cursor, Limit, Order, QText, QTextList
from recalld.api.schemas.agents import AgentState
from recalld.api.schemas.blocks import Block, BlockCreate, BlockUpdate
from recalld.api.schemas.common import error_responses
from recalld.services.agents import normalize_includes

router = APIRouter(tags=["blocks"])


@router.post("/v1/blocks/", response_model=Block, responses=error_responses(400))
async def create_block(body: BlockCreate, caller: CallerDep, services: ServicesDep) -> dict:
    """Create a standalone block (its value may not exceed its limit)."""
    return await services.blocks.create(caller, body.model_dump())


@router.get("/v1/blocks/", response_model=list[Block], responses=error_responses())
async def list_blocks(
    caller: CallerDep,
    services: ServicesDep,
    label: QText = None,
    templates_only: bool = False,
    name: QText = None,
    tags: QTextList = None,
    match_all_tags: bool = False,
    project_id: QText = None,
    label_search: QText = None,
    value_search: QText = None,
    description_search: QText = None,
    connected_to_agents_count_gt: int | None = None,
    connected_to_agents_count_lt: int | None = None,
    connected_to_agents_count_eq: Annotated[list[int] | None, Query()] = None,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 50,
    order: Order = "asc",
) -> list[dict]:
    """All blocks of the organization, agents' blocks included; oldest first by default."""
    eq = connected_to_agents_count_eq[0] if connected_to_agents_count_eq else None
    return await services.blocks.list(
        caller,
        label=label,
        templates_only=templates_only,
        name=name,
        tags=tags,
        match_all_tags=match_all_tags,
        project_id=project_id,
        label_search=label_search,
        value_search=value_search,
        description_search=description_search,
        connected_gt=_bounded(connected_to_agents_count_gt),
        connected_lt=_bounded(connected_to_agents_count_lt),
        connected_eq=_bounded(eq),
        before=before,
        after=after,
        limit=limit,
        ascending=order == "asc",
    )


def _bounded(value: int | None) -> int | None:
    """Counts are compared in SQL; keep them inside 64 bits so no input overflows the database."""
    if value is None:
        return None
    return max(min(value, 2**62), -(2**62))


@router.get("/v1/blocks/count", response_model=int, responses=error_responses())
async def count_blocks(caller: CallerDep, services: ServicesDep) -> int:
    """How many blocks the organization has."""
    return await services.blocks.count(caller)


@router.get("/v1/blocks/{block_id}", response_model=Block, responses=error_responses(404))
async def retrieve_block(block_id: BlockId, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.blocks.retrieve(caller, block_id)


@router.patch("/v1/blocks/{block_id}", response_model=Block, responses=error_responses(400, 404, 409))
async def modify_block(block_id: BlockId, body: BlockUpdate, caller: CallerDep, services: ServicesDep) -> dict:
    """Change the fields sent; every agent the block is attached to sees the change in its prompt."""
    return await services.blocks.update(caller, block_id, body.model_dump(exclude_unset=True))


@router.delete("/v1/blocks/{block_id}", response_model=None, responses=error_responses(404))
async def delete_block(block_id: BlockId, caller: CallerDep, services: ServicesDep) -> None:
    await services.blocks.delete(caller, block_id)


@router.get("/v1/blocks/{block_id}/agents", response_model=list[AgentState], responses=error_responses(400, 404))
async def list_agents_of_block(
    block_id: BlockId,
    caller: CallerDep,
    services: ServicesDep,
    include: QTextList = None,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 50,
    order: Order = "desc",
) -> list[dict]:
    """The agents a block is attached to."""
    return await services.agents.agents_of_block(
        caller,
        block_id,
        include=normalize_includes(include),
        before=before,
        after=after,
        limit=limit,
        ascending=order == "asc",
    )


# --- the agent's core memory ------------------------------------------------------------------------------

CORE = "/v1/agents/{agent_id}/core-memory/blocks"


@router.get(CORE, response_model=list[Block], responses=error_responses(404))
async def list_agent_blocks(
    agent_id: AgentId,
    caller: CallerDep,
    services: ServicesDep,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 100,
    order: Order = "desc",
) -> list[dict]:
    return await services.blocks.list_for_agent(
        caller, agent_id, before=before, after=after, limit=limit, ascending=order == "asc"
    )


@router.get(CORE + "/{block_label}", response_model=Block, responses=error_responses(404))
async def retrieve_agent_block(
    agent_id: AgentId, block_label: BlockLabel, caller: CallerDep, services: ServicesDep
) -> dict:
    """The agent's block with this label."""
    return await services.blocks.retrieve_by_label(caller, agent_id, block_label)


@router.patch(CORE + "/{block_label}", response_model=Block, responses=error_responses(400, 404, 409))
async def modify_agent_block(
    agent_id: AgentId, block_label: BlockLabel, body: BlockUpdate, caller: CallerDep, services: ServicesDep
) -> dict:
    """Change the agent's block with this label; the agent's system message is recompiled."""
    return await services.blocks.update_by_label(caller, agent_id, block_label, body.model_dump(exclude_unset=True))


@router.patch(CORE + "/attach/{block_id}", response_model=AgentState, responses=error_responses(400, 404, 409))
async def attach_block(agent_id: AgentId, block_id: BlockId, caller: CallerDep, services: ServicesDep) -> dict:
    """Attach a block (attaching twice is fine; a second block with the same label is 409)."""
    return await services.agents.attach_block(caller, agent_id, block_id)


@router.patch(CORE + "/detach/{block_id}", response_model=AgentState, responses=error_responses(404))
async def detach_block(agent_id: AgentId, block_id: BlockId, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.agents.detach_block(caller, agent_id, block_id)
