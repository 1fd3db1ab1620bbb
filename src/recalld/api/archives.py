"""/v1/archives: collections of passages that agents can share (contract 5, `client.archives.*`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AfterValidator

from recalld.api.deps import CallerDep, ServicesDep
from recalld.api.params import AgentId, Cursor, Limit, Order
from recalld.api.passages import EMBEDDING_ERRORS
from recalld.api.schemas.common import error_responses
from recalld.api.schemas.passages import (
    Archive,
    ArchiveCreate,
    ArchivePassageBatch,
    ArchivePassageCreate,
    ArchiveUpdate,
    Passage,
)
from recalld.api.schemas.types import clean_text

router = APIRouter(tags=["archives"])


def _clean_optional(value: str | None) -> str | None:
    return value if value is None else clean_text(value)


# Archive and passage ids in paths are free strings (contract 1.2); an unknown one is 404.
ArchiveId = Annotated[str, Path(max_length=128, description="The archive's id"), AfterValidator(clean_text)]
PassageId = Annotated[str, Path(max_length=128, description="The passage's id"), AfterValidator(clean_text)]


@router.post("/v1/archives/", response_model=Archive, responses=error_responses(400))
async def create_archive(body: ArchiveCreate, caller: CallerDep, services: ServicesDep) -> dict:
    """Create an archive; its passages are embedded with `embedding` (default: the server's default model)."""
    return await services.archives.create(caller, body.model_dump(exclude_unset=True))


@router.get("/v1/archives/", response_model=list[Archive], responses=error_responses())
async def list_archives(
    caller: CallerDep,
    services: ServicesDep,
    name: Annotated[str | None, Query(max_length=512, description="Only archives with exactly this name"),
                    AfterValidator(_clean_optional)] = None,
    agent_id: Annotated[str | None, Query(max_length=128, description="Only archives attached to this agent"),
                        AfterValidator(_clean_optional)] = None,
    before: Cursor = None,
    after: Cursor = None,
    limit: Limit = 50,
    order: Order = "desc",
    order_by: Literal["created_at"] = "created_at",
) -> list[dict]:
    """The organization's archives, newest first by default; `agent_id` keeps those attached to it."""
    return await services.archives.list(
        caller, name=name, agent_id=agent_id, before=before, after=after, limit=limit, ascending=order == "asc"
    )


@router.get("/v1/archives/{archive_id}", response_model=Archive, responses=error_responses(404))
async def retrieve_archive(archive_id: ArchiveId, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.archives.retrieve(caller, archive_id)


@router.patch("/v1/archives/{archive_id}", response_model=Archive, responses=error_responses(404))
async def modify_archive(archive_id: ArchiveId, body: ArchiveUpdate, caller: CallerDep, services: ServicesDep) -> dict:
    return await services.archives.update(caller, archive_id, body.model_dump(exclude_unset=True))


@router.delete("/v1/archives/{archive_id}", status_code=204, response_class=Response, responses=error_responses(404))
async def delete_archive(archive_id: ArchiveId, caller: CallerDep, services: ServicesDep) -> Response:
    """Delete the archive and every passage in it."""
    await services.archives.delete(caller, archive_id)
    return Response(status_code=204)


@router.post(
    "/v1/archives/{archive_id}/passages",
    response_model=Passage,
    responses=error_responses(400, 404, *EMBEDDING_ERRORS),
)
async def create_archive_passage(
    archive_id: ArchiveId, body: ArchivePassageCreate, caller: CallerDep, services: ServicesDep
) -> dict:
    """Add one passage to the archive."""
    return (await services.archives.add_passages(caller, archive_id, [body.model_dump()]))[0]


@router.post(
    "/v1/archives/{archive_id}/passages/batch",
    response_model=list[Passage],
    responses=error_responses(400, 404, *EMBEDDING_ERRORS),
)
async def create_archive_passages(
    archive_id: ArchiveId, body: ArchivePassageBatch, caller: CallerDep, services: ServicesDep
) -> list[dict]:
    """Add many passages at once: embedded together in batches, stored in one transaction."""
    items = [p.model_dump() for p in body.passages]
    return await services.archives.add_passages(caller, archive_id, items)


@router.delete(
    "/v1/archives/{archive_id}/passages/{passage_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def delete_archive_passage(
    archive_id: ArchiveId, passage_id: PassageId, caller: CallerDep, services: ServicesDep
) -> Response:
    await services.archives.delete_passage(caller, archive_id, passage_id)
    return Response(status_code=204)


@router.patch(
    "/v1/agents/{agent_id}/archives/attach/{archive_id}", response_model=None, responses=error_responses(404)
)
async def attach_archive(agent_id: AgentId, archive_id: ArchiveId, caller: CallerDep, services: ServicesDep) -> None:
    """Let the agent search the archive too (attaching twice is fine)."""
    await services.archives.attach(caller, agent_id, archive_id)


@router.patch(
    "/v1/agents/{agent_id}/archives/detach/{archive_id}", response_model=None, responses=error_responses(404)
)
async def detach_archive(agent_id: AgentId, archive_id: ArchiveId, caller: CallerDep, services: ServicesDep) -> None:
    await services.archives.detach(caller, agent_id, archive_id)
