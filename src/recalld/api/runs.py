"""/v1/runs and /v1/steps: what a request did (contract 7.1, 7.2)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from recalld.api.deps import CallerDep, ServicesDep
from recalld.api.params import Cursor, Limit, Order, QText
from recalld.api.schemas.common import error_responses
from recalld.api.schemas.messages import LettaMessage, MessageType, Run, RunUsage, Step
from recalld.ids import id_pattern

router = APIRouter(tags=["runs"])

RunId = Annotated[str, Path(min_length=1, max_length=128)]
StepId = Annotated[str, Path(pattern=id_pattern("step"))]
Status = Literal["created", "running", "completed", "failed", "cancelled"]


@router.get("/v1/runs/", response_model=list[Run], responses=error_responses())
async def list_runs(
    caller: CallerDep,
    services: ServicesDep,
    agent_id: QText = None,
    statuses: Annotated[list[Status] | None, Query()] = None,
    background: bool | None = None,
    stop_reason: QText = None,
    active: bool = False,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 100,
    order: Order = "desc",
) -> list[dict]:
    """Runs of the organization, newest first by default."""
    return await services.runs.list(
        caller,
        agent_id=agent_id,
        statuses=statuses,
        background=background,
        stop_reason=stop_reason,
        active=active,
        before=before,
        after=after,
        limit=limit,
        ascending=order == "asc",
    )


@router.get("/v1/runs/{run_id}", response_model=Run, responses=error_responses(404))
async def retrieve_run(run_id: RunId, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.runs.retrieve(caller, run_id)


@router.delete("/v1/runs/{run_id}", response_model=None, responses=error_responses(404))
async def delete_run(run_id: RunId, caller: CallerDep, services: ServicesDep) -> None:
    await services.runs.delete(caller, run_id)


@router.get("/v1/runs/{run_id}/messages", response_model=list[LettaMessage], responses=error_responses(404))
async def run_messages(
    run_id: RunId,
    caller: CallerDep,
    services: ServicesDep,
    limit: Limit = 100,
    order: Order = "asc",
    before: Cursor = None,
    after: Cursor = None,
    include_return_message_types: Annotated[list[MessageType] | None, Query()] = None,
) -> list[dict]:
    """The run's messages (its input included), oldest first by default."""
    return await services.history.run_messages(
        caller,
        run_id,
        limit=limit,
        ascending=order == "asc",
        types=list(include_return_message_types or []) or None,
        before=before,
        after=after,
    )


@router.get("/v1/runs/{run_id}/usage", response_model=RunUsage, responses=error_responses(404))
async def run_usage(run_id: RunId, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.runs.usage(caller, run_id)


@router.get("/v1/runs/{run_id}/steps", response_model=list[Step], responses=error_responses(404))
async def run_steps(
    run_id: RunId,
    caller: CallerDep,
    services: ServicesDep,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 100,
    order: Order = "asc",
) -> list[dict]:
    return await services.runs.steps(
        caller, run_id=run_id, agent_id=None, before=before, after=after, limit=limit, ascending=order == "asc"
    )


@router.get("/v1/steps/", response_model=list[Step], responses=error_responses(404))
async def list_steps(
    caller: CallerDep,
    services: ServicesDep,
    agent_id: QText = None,
    run_id: QText = None,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 50,
    order: Order = "desc",
) -> list[dict]:
    """Steps (model calls) of the organization, of one agent or of one run (an unknown run is 404)."""
    return await services.runs.steps(
        caller, run_id=run_id, agent_id=agent_id, before=before, after=after, limit=limit, ascending=order == "asc"
    )


@router.get("/v1/steps/{step_id}", response_model=Step, responses=error_responses(404))
async def retrieve_step(step_id: StepId, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.runs.step(caller, step_id)
