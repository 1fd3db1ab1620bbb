"""Use cases of core memory blocks: standalone CRUD and the agent-scoped label routes."""

from __future__ import annotations

import sqlalchemy as sa

from recalld import ids
from recalld.errors import Conflict, NotFound
from recalld.services.caller import Caller
from recalld.services.caps import check_block_limit_cap
from recalld.services.memory import check_block_limit, recompile
from recalld.services.views import block_view
from recalld.settings import Settings
from recalld.store import agents as agents_store
from recalld.store import blocks as blocks_store
from recalld.store.router import StoreRouter
from recalld.store.schema import blocks as blocks_table
from recalld.store.types import utcnow

# Fields whose change alters what the model sees in the prompt.
PROMPT_FIELDS = frozenset({"value", "label", "limit", "description", "read_only"})


def new_block_row(caller: Caller, spec: dict, default_limit: int, max_limit: int) -> dict:
    """A block row from a CreateBlock body, limit checked (and the limit itself against the hard cap)."""
    now = utcnow()
    value = spec.get("value") or ""
    limit = spec.get("limit") or default_limit
    check_block_limit_cap(caller.org_id, spec["label"], limit, max_limit)
    check_block_limit(spec["label"], value, limit)
    return {
        "organization_id": caller.org_id,
        "id": ids.new_id("block"),
        "label": spec["label"],
        "value": value,
        "limit": limit,
        "description": spec.get("description"),
        "read_only": bool(spec.get("read_only")),
        "metadata": spec.get("metadata") or {},
        "tags": spec.get("tags") or [],
        "hidden": spec.get("hidden"),
        "is_template": bool(spec.get("is_template")),
        "template_name": spec.get("template_name"),
        "project_id": spec.get("project_id"),
        "template_id": spec.get("template_id"),
        "base_template_id": spec.get("base_template_id"),
        "deployment_id": spec.get("deployment_id"),
        "entity_id": spec.get("entity_id"),
        "preserve_on_migration": spec.get("preserve_on_migration") or False,
        "created_by_id": caller.user_id,
        "last_updated_by_id": caller.user_id,
        "created_at": now,
        "updated_at": now,
    }


class BlockService:
    def __init__(self, router: StoreRouter, settings: Settings, quota=None):  # noqa: ANN001
        self.router = router
        self.settings = settings
        self.quota = quota  # services/quota.py StorageQuota, or None: no storage limit

    async def create(self, caller: Caller, spec: dict) -> dict:
        row = new_block_row(caller, spec, self.settings.core_memory_block_char_limit, self.settings.max_block_limit)
        if self.quota is not None:
            await self.quota.check(caller.org_id, add_bytes=len(row["value"]))
        async with self.router.write(caller.org_id) as conn:
            await blocks_store.insert(conn, [row])
        return block_view(row)

    async def retrieve(self, caller: Caller, block_id: str) -> dict:
        async with self.router.read(caller.org_id) as conn:
            row = await blocks_store.get(conn, caller.org_id, block_id)
        if row is None:
            raise NotFound(f"Block with id '{block_id}' not found")
        return block_view(row)

    async def update(self, caller: Caller, block_id: str, changes: dict) -> dict:
        async with self.router.write(caller.org_id) as conn:
            row = await blocks_store.get(conn, caller.org_id, block_id)
            if row is None:
                raise NotFound(f"Block with id '{block_id}' not found")
            return await self._apply_update(conn, caller, row, changes)

    async def _apply_update(self, conn, caller: Caller, row: dict, changes: dict) -> dict:
        changes = dict(changes)
        if "value" in changes and changes["value"] is None:
            changes["value"] = ""
        if "limit" in changes and changes["limit"] is None:
            del changes["limit"]
        if "label" in changes and changes["label"] is None:
            del changes["label"]
        merged = {**row, **changes}
        if "limit" in changes:
            check_block_limit_cap(caller.org_id, merged["label"], merged["limit"], self.settings.max_block_limit)
        check_block_limit(merged["label"], merged["value"], merged["limit"])
        if self.quota is not None and "value" in changes:
            await self.quota.check(caller.org_id, add_bytes=len(merged["value"]) - len(row["value"] or ""))
        if "label" in changes and changes["label"] != row["label"]:
            await self._check_label_free(conn, caller.org_id, row["id"], changes["label"])
        changes["updated_at"] = utcnow()
        changes["last_updated_by_id"] = caller.user_id
        await blocks_store.update(conn, caller.org_id, row["id"], changes)
        if PROMPT_FIELDS & changes.keys():
            for agent_id in await blocks_store.agent_ids_of(conn, caller.org_id, row["id"]):
                await recompile(conn, caller.org_id, agent_id)
        return block_view({**row, **changes})

    async def _check_label_free(self, conn, org_id: str, block_id: str, label: str) -> None:
        """Renaming a block may not give one of its agents two blocks with the same label."""
        for agent_id in await blocks_store.agent_ids_of(conn, org_id, block_id):
            labels = await blocks_store.labels_of_agent(conn, org_id, agent_id)
            if labels.get(label, block_id) != block_id:
                raise Conflict(f"Agent '{agent_id}' already has a block with label '{label}'")

    async def delete(self, caller: Caller, block_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            agent_ids = await blocks_store.agent_ids_of(conn, caller.org_id, block_id)
            if not await blocks_store.delete(conn, caller.org_id, block_id):
                raise NotFound(f"Block with id '{block_id}' not found")
            for agent_id in agent_ids:
                await recompile(conn, caller.org_id, agent_id)

    async def count(self, caller: Caller) -> int:
        async with self.router.read(caller.org_id) as conn:
            query = (
                sa.select(sa.func.count())
                .select_from(blocks_table)
                .where(blocks_table.c.organization_id == caller.org_id)
            )
            return int((await conn.execute(query)).scalar_one())

    async def list(
        self,
        caller: Caller,
        *,
        label: str | None = None,
        templates_only: bool = False,
        name: str | None = None,
        tags: list[str] | None = None,
        match_all_tags: bool = False,
        project_id: str | None = None,
        label_search: str | None = None,
        value_search: str | None = None,
        description_search: str | None = None,
        connected_gt: int | None = None,
        connected_lt: int | None = None,
        connected_eq: int | None = None,
        before: str | None = None,
        after: str | None = None,
        limit: int = 50,
        ascending: bool = True,
    ) -> list[dict]:
        t = blocks_table
        filters: list = []
        if label is not None:
            filters.append(t.c.label == label)
        if templates_only:
            filters.append(t.c.is_template.is_(True))
        if name is not None:
            filters.append(t.c.template_name == name)
        if project_id is not None:
            filters.append(t.c.project_id == project_id)
        for column, needle in (
            (t.c.label, label_search),
            (t.c.value, value_search),
            (t.c.description, description_search),
        ):
            if needle:
                filters.append(sa.func.lower(column).contains(needle.lower(), autoescape=True))
        count = blocks_store.attached_count(caller.org_id)
        # Bound as BIGINT: PostgreSQL would otherwise type the parameter like count(), an int4.
        if connected_gt is not None:
            filters.append(count > sa.literal(connected_gt, sa.BigInteger))
        if connected_lt is not None:
            filters.append(count < sa.literal(connected_lt, sa.BigInteger))
        if connected_eq is not None:
            filters.append(count == sa.literal(connected_eq, sa.BigInteger))
        wanted = set(tags or [])
        async with self.router.read(caller.org_id) as conn:
            if not wanted:
                rows = await blocks_store.list_page(
                    conn,
                    caller.org_id,
                    filters=filters,
                    before=before,
                    after=after,
                    limit=limit,
                    ascending=ascending,
                )
                return [block_view(r) for r in rows]
            # Block tags live in a JSON column: scan pages and keep the matches.
            out: list[dict] = []
            cursor = after
            while len(out) < limit:
                rows = await blocks_store.list_page(
                    conn,
                    caller.org_id,
                    filters=filters,
                    before=before,
                    after=cursor,
                    limit=200,
                    ascending=ascending,
                )
                if not rows:
                    break
                for r in rows:
                    have = set(r.get("tags") or [])
                    if (wanted <= have) if match_all_tags else (wanted & have):
                        out.append(block_view(r))
                cursor = rows[-1]["id"]
            return out[:limit]

    # --- agent-scoped routes ---------------------------------------------------------------------------

    async def _agent_or_404(self, conn, org_id: str, agent_id: str) -> dict:
        agent = await agents_store.get(conn, org_id, agent_id)
        if agent is None:
            raise NotFound(f"Agent with ID {agent_id} not found")
        return agent

    async def list_for_agent(self, caller: Caller, agent_id: str, *, before, after, limit: int, ascending: bool):
        async with self.router.read(caller.org_id) as conn:
            await self._agent_or_404(conn, caller.org_id, agent_id)
            rows = await blocks_store.agent_page(
                conn, caller.org_id, agent_id, before=before, after=after, limit=limit, ascending=ascending
            )
        return [block_view(r) for r in rows]

    async def _by_label(self, conn, org_id: str, agent_id: str, label: str) -> dict:
        await self._agent_or_404(conn, org_id, agent_id)
        block_id = (await blocks_store.labels_of_agent(conn, org_id, agent_id)).get(label)
        row = await blocks_store.get(conn, org_id, block_id) if block_id else None
        if row is None:
            raise NotFound(f"No block with label '{label}' found for agent '{agent_id}'")
        return row

    async def retrieve_by_label(self, caller: Caller, agent_id: str, label: str) -> dict:
        async with self.router.read(caller.org_id) as conn:
            return block_view(await self._by_label(conn, caller.org_id, agent_id, label))

    async def update_by_label(self, caller: Caller, agent_id: str, label: str, changes: dict) -> dict:
        async with self.router.write(caller.org_id) as conn:
            row = await self._by_label(conn, caller.org_id, agent_id, label)
            return await self._apply_update(conn, caller, row, changes)
