"""Use cases of agents: create, read, list, modify, delete, and attaching blocks."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld import ids
from recalld.agent.messages import memgpt_boot_messages, message_row
from recalld.agent.prompt import compile_system_message, default_system
from recalld.errors import Conflict, InvalidInput, NotFound, Unprocessable
from recalld.secrets_box import SecretsBox
from recalld.services.blocks import new_block_row
from recalld.services.caller import Caller
from recalld.services.caps import check_blocks_per_agent
from recalld.services.memory import recompile
from recalld.services.models import ModelResolver
from recalld.services.names import random_agent_name
from recalld.services.views import agent_view
from recalld.settings import Settings
from recalld.store import agents as agents_store
from recalld.store import blocks as blocks_store
from recalld.store import messages as messages_store
from recalld.store import tools as tools_store
from recalld.store.router import StoreRouter
from recalld.store.schema import agents as agents_table
from recalld.store.types import utcnow
from recalld.tools.builtin import BASE_TOOLS, base_tool_rules

INCLUDES = frozenset(
    {
        "agent.blocks",
        "agent.tools",
        "agent.tags",
        "agent.sources",
        "agent.identities",
        "agent.managed_group",
        "agent.secrets",
        "agent.pending_approval",
    }
)
ALL_RELATIONSHIPS = frozenset({"agent.blocks", "agent.tools", "agent.tags"})
# Legacy include_relationships names, mapped onto include values.
LEGACY_INCLUDES = {
    "memory": "agent.blocks",
    "blocks": "agent.blocks",
    "tools": "agent.tools",
    "tags": "agent.tags",
}

MEMGPT_TYPES = frozenset({"memgpt_agent", "memgpt_v2_agent"})
DEFAULT_BLOCK_DESCRIPTIONS = {
    "human": "What you know about the person you are talking with: who they are, what they like, what they need.",
    "persona": "Who you are: your personality, your goals, how you talk. Keep it consistent.",
}
# Fields of a PATCH that are copied onto the agent row as they are.
PLAIN_FIELDS = (
    "name",
    "system",
    "description",
    "metadata",
    "message_buffer_autoclear",
    "model_settings",
    "response_format",
    "enable_sleeptime",
    "hidden",
    "last_run_completion",
    "last_run_duration_ms",
    "last_stop_reason",
    "max_files_open",
    "per_file_view_window_char_limit",
    "project_id",
    "template_id",
    "base_template_id",
)


def normalize_includes(include: list[str] | None, legacy: list[str] | None = None) -> set[str]:
    wanted = set(include or [])
    for name in legacy or []:
        if name in LEGACY_INCLUDES:
            wanted.add(LEGACY_INCLUDES[name])
    unknown = wanted - INCLUDES
    if unknown:
        raise InvalidInput(f"Unknown include value(s): {sorted(unknown)}; allowed: {sorted(INCLUDES)}")
    return wanted


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise InvalidInput(f"Invalid timezone '{name}': not an IANA time zone name") from e
    return name


def _fold_llm_overrides(llm_config: dict, body: dict) -> dict:
    """Deprecated create/update knobs that override parts of the llm_config."""
    llm_config = dict(llm_config)
    if body.get("context_window_limit") is not None:
        llm_config["context_window"] = body["context_window_limit"]
    if "max_tokens" in body:
        llm_config["max_tokens"] = body["max_tokens"]
    for key in ("parallel_tool_calls", "enable_reasoner", "max_reasoning_tokens", "response_format"):
        if body.get(key) is not None:
            llm_config[key] = body[key]
    return llm_config


def default_model_settings(llm_config: dict) -> dict:
    return {
        "max_output_tokens": llm_config.get("max_tokens"),
        "parallel_tool_calls": bool(llm_config.get("parallel_tool_calls")),
        "provider_type": llm_config.get("model_endpoint_type"),
        "temperature": llm_config.get("temperature", 1.0),
        "response_format": llm_config.get("response_format"),
        "strict": bool(llm_config.get("strict")),
    }


class AgentService:
    def __init__(
        self,
        router: StoreRouter,
        settings: Settings,
        models: ModelResolver,
        box: SecretsBox,
        quota=None,  # noqa: ANN001
    ):
        self.router = router
        self.settings = settings
        self.models = models
        # Secrets are stored sealed and opened only for the view and the turn (R21).
        self.box = box
        self.quota = quota  # services/quota.py StorageQuota, or None: no storage limit

    # --- create ---------------------------------------------------------------------------------------

    async def _llm_config_for(self, body: dict) -> dict:
        if body.get("model"):
            config = await self.models.resolve_llm(body["model"])
        elif body.get("llm_config"):
            config = self.models.normalize_llm_config(body["llm_config"])
        elif self.settings.default_llm_handle:
            config = await self.models.resolve_llm(self.settings.default_llm_handle)
        else:
            raise InvalidInput("INVALID_ARGUMENT: Must specify either model or llm_config in request")
        return _fold_llm_overrides(config, body)

    async def _embedding_config_for(self, body: dict) -> dict:
        if body.get("embedding"):
            return await self.models.resolve_embedding(body["embedding"])
        if body.get("embedding_config"):
            return self.models.normalize_embedding_config(body["embedding_config"])
        return await self.models.resolve_embedding(self.settings.default_embedding)

    def _compaction_settings(self, given: dict | None, llm_config: dict) -> dict:
        settings = {
            "model": self.settings.compaction_model or llm_config.get("handle"),
            "mode": "sliding_window",
            "sliding_window_percentage": 0.3,
            "clip_chars": 50_000,
            "prompt": None,
            "prompt_acknowledgement": False,
            "model_settings": None,
        }
        settings.update(given or {})
        return settings

    async def create(self, caller: Caller, body: dict) -> dict:
        """Create an agent with its blocks, tools and first messages in one transaction."""
        # Model resolution may reach a provider over the network: do it before the transaction opens.
        llm_config = await self._llm_config_for(body)
        embedding_config = await self._embedding_config_for(body)
        agent_type = body.get("agent_type") or "letta_v1_agent"
        timezone = check_timezone(body.get("timezone") or "UTC")
        now = utcnow()
        agent_id = ids.new_id("agent")

        new_blocks = []
        for spec in body.get("memory_blocks") or []:
            spec = dict(spec)
            if spec["label"] in DEFAULT_BLOCK_DESCRIPTIONS and not spec.get("description"):
                spec["description"] = DEFAULT_BLOCK_DESCRIPTIONS[spec["label"]]
            new_blocks.append(new_block_row(caller, spec, self.settings.core_memory_block_char_limit,
                                            self.settings.max_block_limit))
        if self.quota is not None:
            await self.quota.check(caller.org_id, add_bytes=sum(len(b["value"]) for b in new_blocks))

        tool_rules = [r for r in (body.get("tool_rules") or [])]
        include_rules = body.get("include_base_tool_rules")
        if include_rules or (include_rules is None and agent_type in MEMGPT_TYPES):
            named = {r["tool_name"] for r in tool_rules}
            tool_rules += [r for r in base_tool_rules(agent_type) if r["tool_name"] not in named]
        tool_rules = [{k: v for k, v in r.items() if v is not None or k == "prompt_template"} for r in tool_rules]

        secrets = dict(body.get("tool_exec_environment_variables") or {})
        secrets.update(body.get("secrets") or {})
        system = body.get("system") or default_system(agent_type)

        async with self.router.write(caller.org_id) as conn:
            existing_blocks = await self._existing_blocks(conn, caller.org_id, body.get("block_ids") or [])
            all_blocks = new_blocks + list(existing_blocks.values())
            check_blocks_per_agent(caller.org_id, len(all_blocks), self.settings.max_blocks_per_agent)
            self._check_unique_labels(all_blocks)
            tool_ids = await self._resolve_tools(conn, caller.org_id, agent_type, body)

            initial = self._initial_messages(caller.org_id, agent_id, agent_type, body, now, timezone)
            system_row = message_row(
                org_id=caller.org_id,
                agent_id=agent_id,
                seq=0,
                role="system",
                created_at=now,
                text=compile_system_message(
                    system=system,
                    agent_type=agent_type,
                    agent_id=agent_id,
                    blocks=all_blocks,
                    timezone=timezone,
                    now=now,
                ),
            )
            row = {
                "organization_id": caller.org_id,
                "id": agent_id,
                "name": body.get("name") or random_agent_name(),
                "agent_type": agent_type,
                "system": system,
                "description": body.get("description"),
                "metadata": body.get("metadata"),
                "llm_config": llm_config,
                "embedding_config": embedding_config,
                "model_settings": body.get("model_settings") or default_model_settings(llm_config),
                "compaction_settings": self._compaction_settings(body.get("compaction_settings"), llm_config),
                "response_format": body.get("response_format"),
                "tool_rules": tool_rules,
                "message_buffer_autoclear": bool(body.get("message_buffer_autoclear"))
                or agent_type == "workflow_agent",
                "timezone": timezone,
                "hidden": body.get("hidden"),
                "project_id": body.get("project_id"),
                "template_id": body.get("template_id"),
                "base_template_id": body.get("base_template_id"),
                "enable_sleeptime": body.get("enable_sleeptime"),
                "secrets": self.box.seal_mapping(secrets),
                "max_files_open": body.get("max_files_open") or 10,
                "per_file_view_window_char_limit": body.get("per_file_view_window_char_limit") or 25_000,
                "last_seq": len(initial),
                "system_message_id": system_row["id"],
                "summary_message_id": None,
                "context_start_seq": 1,
                "created_by_id": caller.user_id,
                "last_updated_by_id": caller.user_id,
                "created_at": now,
                "updated_at": now,
            }
            await blocks_store.insert(conn, new_blocks)
            await agents_store.insert(conn, row)
            for block in all_blocks:
                await blocks_store.attach(conn, caller.org_id, agent_id, block["id"], block["label"])
            await tools_store.attach_many(conn, caller.org_id, agent_id, tool_ids)
            await agents_store.set_tags(conn, caller.org_id, agent_id, body.get("tags") or [])
            await messages_store.insert_many(conn, [system_row, *initial])
            return await self._state(conn, caller.org_id, row, ALL_RELATIONSHIPS)

    def _initial_messages(self, org_id, agent_id, agent_type, body, now, timezone) -> list[dict]:
        given = body.get("initial_message_sequence")
        if given is not None:
            rows = []
            for i, m in enumerate(given):
                content = m["content"]
                parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
                # Successive microseconds keep message dates non-decreasing in history order.
                rows.append(
                    message_row(
                        org_id=org_id,
                        agent_id=agent_id,
                        seq=i + 1,
                        role=m["role"],
                        content=parts,
                        created_at=now + timedelta(microseconds=i + 1),
                        name=m.get("name"),
                        otid=m.get("otid"),
                        sender_id=m.get("sender_id"),
                    )
                )
            return rows
        if agent_type in MEMGPT_TYPES:
            return memgpt_boot_messages(org_id, agent_id, 1, now, timezone)
        return []

    async def _existing_blocks(self, conn: AsyncConnection, org_id: str, block_ids: list[str]) -> dict[str, dict]:
        found = await blocks_store.get_many(conn, org_id, block_ids)
        missing = [b for b in dict.fromkeys(block_ids) if b not in found]
        if missing:
            raise NotFound(f"Block(s) not found: {missing}")
        return {b: found[b] for b in dict.fromkeys(block_ids)}

    @staticmethod
    def _check_unique_labels(blocks: list[dict]) -> None:
        seen: set[str] = set()
        for block in blocks:
            if block["label"] in seen:
                raise Conflict(f"An agent cannot have two blocks with label '{block['label']}'")
            seen.add(block["label"])

    async def _resolve_tools(self, conn: AsyncConnection, org_id: str, agent_type: str, body: dict) -> list[str]:
        names = list(body.get("tools") or [])
        if body.get("include_base_tools", True):
            names = list(BASE_TOOLS.get(agent_type, ())) + names
        by_name = await tools_store.by_names(conn, org_id, names)
        missing = {n for n in names if n not in by_name}
        if missing:
            raise InvalidInput(f"Tools not found by name: {missing}")
        tool_ids = [by_name[n]["id"] for n in names]
        return tool_ids + await self._check_tool_ids(conn, org_id, body.get("tool_ids") or [])

    async def _check_tool_ids(self, conn: AsyncConnection, org_id: str, tool_ids: list[str]) -> list[str]:
        found = await tools_store.by_ids(conn, org_id, tool_ids)
        missing = [t for t in dict.fromkeys(tool_ids) if t not in found]
        if missing:
            raise NotFound(f"Tool(s) not found: {missing}")
        return list(dict.fromkeys(tool_ids))

    # --- read -----------------------------------------------------------------------------------------

    async def _state(self, conn: AsyncConnection, org_id: str, row: dict, include: set[str]) -> dict:
        blocks = await blocks_store.for_agent(conn, org_id, row["id"]) if "agent.blocks" in include else []
        tools = await tools_store.for_agent(conn, org_id, row["id"]) if "agent.tools" in include else []
        tags: list[str] = []
        if include & {"agent.tags", "agent.blocks"}:
            tags = (await agents_store.tags_for(conn, org_id, [row["id"]]))[row["id"]]
        message_ids = await messages_store.in_context_ids(conn, org_id, row)
        return self._shown(
            agent_view(self._opened(row), blocks=blocks, tools=tools, tags=tags, message_ids=message_ids)
        )

    def _opened(self, row: dict) -> dict:
        """The row with its secrets decrypted, for the view (Letta shows them to the agent's organization)."""
        return {**row, "secrets": self.box.open_mapping(row.get("secrets"))} if row.get("secrets") else row

    def _shown(self, view: dict) -> dict:
        """An agent as its organization sees it: no operator base URL in its configs (R20)."""
        view["llm_config"] = self.models.shown_llm_config(view["llm_config"])
        view["embedding_config"] = self.models.shown_embedding_config(view["embedding_config"])
        return view

    async def _get_or_404(self, conn: AsyncConnection, org_id: str, agent_id: str) -> dict:
        row = await agents_store.get(conn, org_id, agent_id)
        if row is None:
            raise NotFound(f"Agent with ID {agent_id} not found")
        return row

    async def retrieve(self, caller: Caller, agent_id: str, include: set[str]) -> dict:
        async with self.router.read(caller.org_id) as conn:
            row = await self._get_or_404(conn, caller.org_id, agent_id)
            return await self._state(conn, caller.org_id, row, include)

    async def list(
        self,
        caller: Caller,
        *,
        include: set[str],
        name: str | None = None,
        tags: list[str] | None = None,
        match_all_tags: bool = False,
        query_text: str | None = None,
        project_id: str | None = None,
        template_id: str | None = None,
        base_template_id: str | None = None,
        last_stop_reason: str | None = None,
        created_by_id: str | None = None,
        before: str | None = None,
        after: str | None = None,
        limit: int = 50,
        ascending: bool = False,
        order_by: str = "created_at",
    ) -> list[dict]:
        t = agents_table
        filters: list = [sa.or_(t.c.hidden.is_(None), t.c.hidden.is_(False))]
        for column, value in (
            (t.c.name, name),
            (t.c.project_id, project_id),
            (t.c.template_id, template_id),
            (t.c.base_template_id, base_template_id),
            (t.c.last_stop_reason, last_stop_reason),
            (t.c.created_by_id, created_by_id),
        ):
            if value is not None:
                filters.append(column == value)
        if query_text:
            filters.append(sa.func.lower(t.c.name).contains(query_text.lower(), autoescape=True))
        if tags:
            filters.append(agents_store.tag_filter(caller.org_id, tags, match_all_tags))
        async with self.router.read(caller.org_id) as conn:
            rows = await agents_store.list_page(
                conn,
                caller.org_id,
                filters=filters,
                sort=order_by,
                before=before,
                after=after,
                limit=limit,
                ascending=ascending,
            )
            agent_ids = [r["id"] for r in rows]
            blocks = await blocks_store.for_agents(conn, caller.org_id, agent_ids) if "agent.blocks" in include else {}
            tools = await tools_store.for_agents(conn, caller.org_id, agent_ids) if "agent.tools" in include else {}
            tags_by = (
                await agents_store.tags_for(conn, caller.org_id, agent_ids)
                if include & {"agent.tags", "agent.blocks"}
                else {}
            )
            out = []
            for r in rows:
                message_ids = await messages_store.in_context_ids(conn, caller.org_id, r)
                out.append(
                    self._shown(
                        agent_view(
                            self._opened(r),
                            blocks=blocks.get(r["id"], []),
                            tools=tools.get(r["id"], []),
                            tags=tags_by.get(r["id"], []),
                            message_ids=message_ids,
                        )
                    )
                )
            return out

    async def count(self, caller: Caller) -> int:
        async with self.router.read(caller.org_id) as conn:
            query = (
                sa.select(sa.func.count())
                .select_from(agents_table)
                .where(
                    agents_table.c.organization_id == caller.org_id,
                    sa.or_(agents_table.c.hidden.is_(None), agents_table.c.hidden.is_(False)),
                )
            )
            return int((await conn.execute(query)).scalar_one())

    async def agents_of_block(
        self, caller: Caller, block_id: str, *, include: set[str], before, after, limit: int, ascending: bool
    ) -> list[dict]:
        async with self.router.read(caller.org_id) as conn:
            if await blocks_store.get(conn, caller.org_id, block_id) is None:
                raise NotFound(f"Block with id '{block_id}' not found")
            agent_ids = await blocks_store.agent_ids_of(conn, caller.org_id, block_id)
        if not agent_ids:
            return []
        # Reuse the list query so cursors and ordering behave as everywhere else.
        return await self._list_ids(caller, agent_ids, include, before, after, limit, ascending)

    async def _list_ids(self, caller, agent_ids, include, before, after, limit, ascending) -> list[dict]:
        async with self.router.read(caller.org_id) as conn:
            rows = await agents_store.list_page(
                conn,
                caller.org_id,
                filters=[agents_table.c.id.in_(agent_ids)],
                sort="created_at",
                before=before,
                after=after,
                limit=limit,
                ascending=ascending,
            )
            return [await self._state(conn, caller.org_id, r, include) for r in rows]

    # --- modify ---------------------------------------------------------------------------------------

    async def update(self, caller: Caller, agent_id: str, changes: dict) -> dict:
        """Apply a partial update; a rejected request changes nothing (one transaction, checks first)."""
        values: dict = {k: changes[k] for k in PLAIN_FIELDS if k in changes}
        if "name" in values and values["name"] is None:
            del values["name"]
        if "system" in values and values["system"] is None:
            del values["system"]
        if "message_buffer_autoclear" in values and values["message_buffer_autoclear"] is None:
            del values["message_buffer_autoclear"]
        if changes.get("timezone") is not None:
            values["timezone"] = check_timezone(changes["timezone"])
        if "secrets" in changes:
            values["secrets"] = self.box.seal_mapping(changes["secrets"])
        if changes.get("model"):
            values["llm_config"] = await self.models.resolve_llm(changes["model"])
        elif changes.get("llm_config"):
            values["llm_config"] = self.models.normalize_llm_config(changes["llm_config"])
        if changes.get("embedding"):
            values["embedding_config"] = await self.models.resolve_embedding(changes["embedding"])
        elif changes.get("embedding_config"):
            values["embedding_config"] = self.models.normalize_embedding_config(changes["embedding_config"])
        if "tool_rules" in changes:
            values["tool_rules"] = [
                {k: v for k, v in r.items() if v is not None or k == "prompt_template"}
                for r in changes["tool_rules"] or []
            ]

        async with self.router.write(caller.org_id) as conn:
            row = await self._get_or_404(conn, caller.org_id, agent_id)
            overrides = {
                k: changes[k] for k in ("context_window_limit", "max_tokens", "parallel_tool_calls") if k in changes
            }
            if overrides:
                values["llm_config"] = _fold_llm_overrides(values.get("llm_config", row["llm_config"]), overrides)
            if "compaction_settings" in changes:
                llm = values.get("llm_config", row["llm_config"])
                values["compaction_settings"] = self._compaction_settings(changes["compaction_settings"], llm)
            recompile_needed = False
            if changes.get("block_ids") is not None:
                blocks = await self._existing_blocks(conn, caller.org_id, changes["block_ids"])
                check_blocks_per_agent(caller.org_id, len(blocks), self.settings.max_blocks_per_agent)
                self._check_unique_labels(list(blocks.values()))
                await blocks_store.detach_all(conn, caller.org_id, agent_id)
                for block in blocks.values():
                    await blocks_store.attach(conn, caller.org_id, agent_id, block["id"], block["label"])
                recompile_needed = True
            if changes.get("tool_ids") is not None:
                tool_ids = await self._check_tool_ids(conn, caller.org_id, changes["tool_ids"])
                await tools_store.detach_all(conn, caller.org_id, agent_id)
                await tools_store.attach_many(conn, caller.org_id, agent_id, tool_ids)
            if changes.get("message_ids") is not None:
                values.update(await self._context_from_ids(conn, caller.org_id, row, changes["message_ids"]))
                recompile_needed = True
            if changes.get("tags") is not None:
                await agents_store.set_tags(conn, caller.org_id, agent_id, changes["tags"])
            values["updated_at"] = utcnow()
            values["last_updated_by_id"] = caller.user_id
            await agents_store.update(conn, caller.org_id, agent_id, values)
            row = {**row, **values}
            if recompile_needed:
                await recompile(conn, caller.org_id, agent_id, row)
            return await self._state(conn, caller.org_id, row, ALL_RELATIONSHIPS)

    async def _context_from_ids(self, conn: AsyncConnection, org_id: str, agent: dict, message_ids: list[str]) -> dict:
        """Accept a new in-context list only in the shape the window has (contract R14)."""
        shape = (
            "message_ids must be the system message, optionally the latest summary, then a contiguous run of "
            "the agent's history that ends with its newest message"
        )
        if not message_ids or message_ids[0] != agent["system_message_id"]:
            raise Unprocessable(f"{shape}; the first id must be the system message {agent['system_message_id']}")
        rest = message_ids[1:]
        summary_id = None
        if rest and agent.get("summary_message_id") and rest[0] == agent["summary_message_id"]:
            summary_id, rest = rest[0], rest[1:]
        seqs = await messages_store.seqs_of(conn, org_id, agent["id"], rest)
        unknown = [m for m in rest if m not in seqs]
        if unknown:
            raise Unprocessable(f"{shape}; unknown message id(s) for this agent: {unknown[:5]}")
        run = [seqs[m] for m in rest]
        if not run:
            return {"context_start_seq": agent["last_seq"] + 1, "summary_message_id": summary_id}
        if run[-1] != agent["last_seq"] or run != list(range(run[0], run[0] + len(run))):
            raise Unprocessable(shape)
        return {"context_start_seq": run[0], "summary_message_id": summary_id}

    async def delete(self, caller: Caller, agent_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await agents_store.delete(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")

    async def attach_block(self, caller: Caller, agent_id: str, block_id: str) -> dict:
        async with self.router.write(caller.org_id) as conn:
            row = await self._get_or_404(conn, caller.org_id, agent_id)
            block = await blocks_store.get(conn, caller.org_id, block_id)
            if block is None:
                raise NotFound(f"Block with id '{block_id}' not found")
            labels = await blocks_store.labels_of_agent(conn, caller.org_id, agent_id)
            if block_id not in labels.values():
                check_blocks_per_agent(caller.org_id, len(labels) + 1, self.settings.max_blocks_per_agent)
                if block["label"] in labels:
                    raise Conflict(
                        f"Agent '{agent_id}' already has a block with label '{block['label']}' "
                        f"({labels[block['label']]})"
                    )
                await blocks_store.attach(conn, caller.org_id, agent_id, block_id, block["label"])
                row["updated_at"] = utcnow()
                await agents_store.update(conn, caller.org_id, agent_id, {"updated_at": row["updated_at"]})
                await recompile(conn, caller.org_id, agent_id, row)
            return await self._state(conn, caller.org_id, row, ALL_RELATIONSHIPS)

    async def detach_block(self, caller: Caller, agent_id: str, block_id: str) -> dict:
        async with self.router.write(caller.org_id) as conn:
            row = await self._get_or_404(conn, caller.org_id, agent_id)
            if not await blocks_store.detach(conn, caller.org_id, agent_id, block_id):
                raise NotFound(
                    f"No block with id '{block_id}' found for agent '{agent_id}' with actor id: '{caller.user_id}'"
                )
            row["updated_at"] = utcnow()
            await agents_store.update(conn, caller.org_id, agent_id, {"updated_at": row["updated_at"]})
            await recompile(conn, caller.org_id, agent_id, row)
            return await self._state(conn, caller.org_id, row, ALL_RELATIONSHIPS)
