"""/v1/tools and the agent's tools (contract 6)."""

from __future__ import annotations

from fastapi import APIRouter

from recalld.api.deps import CallerDep, ServicesDep
from recalld.api.params import AgentId, Cursor, Limit, Order, QText, QTextList, ToolId, split_csv
from recalld.api.schemas.common import error_responses
from recalld.api.schemas.tools import Tool, ToolCreate, ToolUpdate

router = APIRouter(tags=["tools"])


@router.post("/v1/tools/", response_model=Tool, responses=error_responses(400, 409))
async def create_tool(body: ToolCreate, caller: CallerDep, services: ServicesDep) -> dict:
    """Create a tool from Python source; its JSON schema comes from the signature and docstring. A taken name is 409."""
    return await services.tools.create(caller, body.model_dump(), upsert=False)


@router.put("/v1/tools/", response_model=Tool, responses=error_responses(400, 409))
async def upsert_tool(body: ToolCreate, caller: CallerDep, services: ServicesDep) -> dict:
    """Create a tool, or replace the custom tool that has its name."""
    return await services.tools.create(caller, body.model_dump(), upsert=True)


@router.get("/v1/tools/", response_model=list[Tool], responses=error_responses(400))
async def list_tools(
    caller: CallerDep,
    services: ServicesDep,
    name: QText = None,
    names: QTextList = None,
    tool_ids: QTextList = None,
    search: QText = None,
    tool_types: QTextList = None,
    exclude_tool_types: QTextList = None,
    return_only_letta_tools: bool = False,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 50,
    order: Order = "desc",
) -> list[dict]:
    """Tools of the organization, built-ins included; newest first by default."""
    return await services.tools.list(
        caller,
        name=name,
        names=split_csv(names),
        tool_ids=split_csv(tool_ids),
        search=search,
        tool_types=split_csv(tool_types),
        exclude_tool_types=split_csv(exclude_tool_types),
        return_only_letta_tools=return_only_letta_tools,
        before=before,
        after=after,
        limit=limit,
        ascending=order == "asc",
    )


@router.get("/v1/tools/{tool_id}", response_model=Tool, responses=error_responses(404))
async def retrieve_tool(tool_id: ToolId, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.tools.retrieve(caller, tool_id)


@router.patch("/v1/tools/{tool_id}", response_model=Tool, responses=error_responses(400, 404, 409))
async def modify_tool(tool_id: ToolId, body: ToolUpdate, caller: CallerDep, services: ServicesDep) -> dict:
    """Change the fields sent; new source re-derives the schema."""
    return await services.tools.update(caller, tool_id, body.model_dump(exclude_unset=True))


@router.delete("/v1/tools/{tool_id}", response_model=None, responses=error_responses(404))
async def delete_tool(tool_id: ToolId, caller: CallerDep, services: ServicesDep) -> None:
    await services.tools.delete(caller, tool_id)


@router.get("/v1/agents/{agent_id}/tools", response_model=list[Tool], responses=error_responses(404))
async def list_agent_tools(
    agent_id: AgentId,
    caller: CallerDep,
    services: ServicesDep,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 10,
    order: Order = "desc",
) -> list[dict]:
    return await services.tools.list_for_agent(
        caller, agent_id, before=before, after=after, limit=limit, ascending=order == "asc"
    )


@router.patch("/v1/agents/{agent_id}/tools/attach/{tool_id}", response_model=None, responses=error_responses(404))
async def attach_tool(agent_id: AgentId, tool_id: ToolId, caller: CallerDep, services: ServicesDep) -> None:
    """Attach a tool to the agent (attaching twice is fine). Answers null, as Letta does for 1.x clients."""
    await services.tools.attach(caller, agent_id, tool_id)


@router.patch("/v1/agents/{agent_id}/tools/detach/{tool_id}", response_model=None, responses=error_responses(404))
async def detach_tool(agent_id: AgentId, tool_id: ToolId, caller: CallerDep, services: ServicesDep) -> None:
    await services.tools.detach(caller, agent_id, tool_id)
