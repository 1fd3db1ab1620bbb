"""Archives as resources of their own (contract 5, `client.archives.*`): create, read, list, modify,
delete, add passages (one or a batch, embedded together), and attaching them to agents."""

from __future__ import annotations

from recalld import ids
from recalld.errors import InvalidInput, NotFound
from recalld.services.caller import Caller
from recalld.services.passages import PassageService, check_tags, check_text, passage_view
from recalld.store import agents as agents_store
from recalld.store import archives as archives_store
from recalld.store import passages as passages_store
from recalld.store.types import utcnow

MAX_BATCH = 1000


def archive_view(row: dict) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row.get("description"),
        "metadata": row.get("metadata") or {},
        "embedding_config": row.get("embedding_config"),
        "vector_db_provider": row.get("vector_db_provider") or "native",
        "organization_id": row["organization_id"],
        "created_by_id": row.get("created_by_id"),
        "last_updated_by_id": row.get("last_updated_by_id"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


class ArchiveService:
    def __init__(self, passages: PassageService):
        self.passages = passages
        self.router = passages.router

    async def _get_or_404(self, conn, org_id: str, archive_id: str) -> dict:
        row = await archives_store.get(conn, org_id, archive_id)
        if row is None:
            raise NotFound(f"Archive with id '{archive_id}' not found")
        return row

    async def create(self, caller: Caller, body: dict) -> dict:
        # Resolving a model handle may reach a provider: before the transaction.
        if body.get("embedding"):
            config = await self.passages.models.resolve_embedding(body["embedding"])
        elif body.get("embedding_config"):
            config = self.passages.models.normalize_embedding_config(body["embedding_config"])
        else:
            config = await self.passages.models.resolve_embedding(self.passages.settings.default_embedding)
        now = utcnow()
        row = {
            "organization_id": caller.org_id,
            "id": ids.new_id("archive"),
            "name": body["name"],
            "description": body.get("description"),
            "metadata": body.get("metadata") or {},
            "embedding_config": config,
            "vector_db_provider": "native",
            "owner_agent_id": None,
            "created_by_id": caller.user_id,
            "last_updated_by_id": caller.user_id,
            "created_at": now,
            "updated_at": now,
        }
        async with self.router.write(caller.org_id) as conn:
            await archives_store.insert(conn, row)
        return self.passages.shown(archive_view(row))

    async def retrieve(self, caller: Caller, archive_id: str) -> dict:
        async with self.router.read(caller.org_id) as conn:
            return self.passages.shown(archive_view(await self._get_or_404(conn, caller.org_id, archive_id)))

    async def list(self, caller: Caller, *, name: str | None, agent_id: str | None, before: str | None,
                   after: str | None, limit: int, ascending: bool) -> list[dict]:
        async with self.router.read(caller.org_id) as conn:
            rows = await archives_store.list_page(
                conn, caller.org_id, name=name, agent_id=agent_id, before=before, after=after, limit=limit,
                ascending=ascending,
            )
        return [self.passages.shown(archive_view(r)) for r in rows]

    async def update(self, caller: Caller, archive_id: str, changes: dict) -> dict:
        values = {k: changes[k] for k in ("name", "description") if k in changes}
        if "name" in values and values["name"] is None:
            del values["name"]
        async with self.router.write(caller.org_id) as conn:
            row = await self._get_or_404(conn, caller.org_id, archive_id)
            values["updated_at"] = utcnow()
            values["last_updated_by_id"] = caller.user_id
            await archives_store.update(conn, caller.org_id, archive_id, values)
        return self.passages.shown(archive_view({**row, **values}))

    async def delete(self, caller: Caller, archive_id: str) -> None:
        """Delete the archive and its passages; agents it was attached to simply lose it."""
        async with self.router.write(caller.org_id) as conn:
            if not await archives_store.delete(conn, caller.org_id, archive_id):
                raise NotFound(f"Archive with id '{archive_id}' not found")

    # --- passages -------------------------------------------------------------------------------------

    async def add_passages(self, caller: Caller, archive_id: str, items: list[dict]) -> list[dict]:
        """Embed the texts together (in batches), then store them all in one transaction."""
        if not items:
            raise InvalidInput("passages must not be empty")
        if len(items) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} passages per request")
        for item in items:
            check_text(item["text"])
            if not item["text"].strip():
                raise InvalidInput("text must not be empty")
            item["tags"] = check_tags(item.get("tags"))
            await self.passages.check_length(item["text"])
        async with self.router.read(caller.org_id) as conn:
            archive = await self._get_or_404(conn, caller.org_id, archive_id)
        if self.passages.quota is not None:
            await self.passages.quota.check(caller.org_id, add_passages=len(items),
                                            add_bytes=sum(len(item["text"]) for item in items))
        config = archive.get("embedding_config") or await self.passages.models.resolve_embedding(
            self.passages.settings.default_embedding
        )
        vectors = await self.passages.embeddings.embed(config, [item["text"] for item in items])
        rows = [
            self.passages.new_row(caller, archive_id, item["text"], item["tags"], item.get("created_at"), config,
                                  item.get("metadata"))
            for item in items
        ]
        async with self.router.write(caller.org_id) as conn:
            await self._get_or_404(conn, caller.org_id, archive_id)
            await passages_store.insert(conn, self.passages.layout, rows, vectors)
        return [self.passages.shown(passage_view(row, vector)) for row, vector in zip(rows, vectors, strict=True)]

    async def delete_passage(self, caller: Caller, archive_id: str, passage_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            await self._get_or_404(conn, caller.org_id, archive_id)
            if not await passages_store.delete(conn, caller.org_id, passage_id, [archive_id]):
                raise NotFound(f"Passage with id {passage_id} not found in archive {archive_id}")

    # --- agents ---------------------------------------------------------------------------------------

    async def attach(self, caller: Caller, agent_id: str, archive_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await agents_store.exists(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")
            await self._get_or_404(conn, caller.org_id, archive_id)
            await archives_store.attach(conn, caller.org_id, archive_id, agent_id)

    async def detach(self, caller: Caller, agent_id: str, archive_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await agents_store.exists(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")
            await self._get_or_404(conn, caller.org_id, archive_id)
            if not await archives_store.detach(conn, caller.org_id, archive_id, agent_id):
                raise NotFound(f"Archive '{archive_id}' is not attached to agent '{agent_id}'")
