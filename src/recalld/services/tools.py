"""Use cases of tools: built-ins registered per organization, custom tools from Python source."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld import ids
from recalld.errors import Conflict, InvalidInput, NotFound
from recalld.sandbox import ToolSandbox
from recalld.sandbox.requirements import requirement_strings
from recalld.services.caller import Caller
from recalld.services.caps import check_tool_source_size
from recalld.services.views import tool_view
from recalld.store import agents as agents_store
from recalld.store import tools as tools_store
from recalld.store.router import StoreRouter
from recalld.store.schema import tools as tools_table
from recalld.store.types import utcnow
from recalld.tools.builtin import BUILTIN_TOOLS
from recalld.tools.parse_pool import derive_schema
from recalld.tools.schema import validate_tool_name

TOOL_TYPES = frozenset(
    {
        "custom",
        "letta_core",
        "letta_memory_core",
        "letta_sleeptime_core",
        "letta_multi_agent_core",
        "letta_voice_sleeptime_core",
        "letta_builtin",
        "letta_files_core",
        "external_mcp",
        "external_composio",
    }
)
LETTA_TOOL_TYPES = TOOL_TYPES - {"custom", "external_mcp", "external_composio"}


async def ensure_builtin_tools(conn: AsyncConnection, org_id: str) -> None:
    """Register (or refresh) the built-in tools of an organization; runs at start-up and for new organizations."""
    existing = await tools_store.by_names(conn, org_id, list(BUILTIN_TOOLS))
    now = utcnow()
    for name, tool in BUILTIN_TOOLS.items():
        fields = {
            "tool_type": tool.tool_type,
            "description": tool.description,
            "source_type": "python",
            "source_code": None,
            "json_schema": tool.json_schema,
            "return_char_limit": tool.return_char_limit,
        }
        current = existing.get(name)
        if current is None:
            await tools_store.insert(
                conn,
                {
                    "organization_id": org_id,
                    "id": ids.new_id("tool"),
                    "name": name,
                    "tags": [],
                    "metadata": {},
                    "args_json_schema": None,
                    "pip_requirements": None,
                    "npm_requirements": None,
                    "default_requires_approval": None,
                    "enable_parallel_execution": False,
                    "project_id": None,
                    "created_by_id": None,
                    "last_updated_by_id": None,
                    "created_at": now,
                    "updated_at": now,
                    **fields,
                },
            )
        elif any(current.get(k) != v for k, v in fields.items()):
            await tools_store.update(conn, org_id, current["id"], {**fields, "updated_at": now})


async def _schema_for(body: dict) -> dict:
    """The tool's JSON schema: the one given, or one derived from its source (contract R4)."""
    schema = body.get("json_schema")
    if schema:
        if not isinstance(schema.get("name"), str) or not schema["name"]:
            raise InvalidInput("json_schema must have a 'name'")
        return schema
    return await derive_schema(body["source_code"])


def _fields_from(body: dict, schema: dict, caller: Caller) -> dict:
    source = body.get("source_code") or ""
    metadata = dict(body.get("metadata_") or {})
    metadata["tool_hash"] = hashlib.sha256(source.encode()).hexdigest()[:16]
    fields = {
        "name": schema["name"],
        "tool_type": "custom",
        "description": body.get("description") or schema.get("description"),
        "source_type": body.get("source_type") or "python",
        "source_code": source,
        "json_schema": schema,
        "args_json_schema": body.get("args_json_schema"),
        "return_char_limit": body.get("return_char_limit") or 50_000,
        "pip_requirements": body.get("pip_requirements"),
        "npm_requirements": body.get("npm_requirements"),
        "default_requires_approval": body.get("default_requires_approval"),
        "enable_parallel_execution": bool(body.get("enable_parallel_execution")),
        "tags": body.get("tags") or [],
        "metadata": metadata,
        "project_id": body.get("project_id"),
        "last_updated_by_id": caller.user_id,
    }
    validate_tool_name(fields["name"])
    return fields


class _NameTaken(Exception):
    """Internal: an insert lost a race for a tool name."""


def _check_requirements(body: dict, sandbox: ToolSandbox) -> None:
    """pip requirements are installed from the operator's index, or refused; npm ones always are (no JS tools)."""
    if body.get("npm_requirements"):
        raise InvalidInput("npm_requirements: recalld runs Python tools only and installs no npm packages")
    if not body.get("pip_requirements"):
        return
    if not sandbox.settings.tool_pip_index_url:
        raise InvalidInput(
            "pip_requirements: this server installs no packages for tools (the operator sets "
            "RECALLD_TOOL_PIP_INDEX_URL to allow it); a tool may import the standard library and what "
            "RECALLD_TOOL_PACKAGES_DIR provides (see the README)"
        )
    try:
        requirement_strings(body["pip_requirements"])
    except ValueError as e:
        raise InvalidInput(f"pip_requirements: {e}") from e


class ToolService:
    def __init__(
        self,
        router: StoreRouter,
        sandbox: ToolSandbox,
        max_source_bytes: int = 256 * 1024,
        quota=None,  # noqa: ANN001
    ):
        self.router = router
        self.sandbox = sandbox
        self.max_source_bytes = max_source_bytes
        self.quota = quota  # services/quota.py StorageQuota, or None: no storage limit

    async def create(self, caller: Caller, body: dict, *, upsert: bool) -> dict:
        check_tool_source_size(caller.org_id, body.get("source_code"), self.max_source_bytes)
        _check_requirements(body, self.sandbox)
        self.sandbox.require_available()
        fields = _fields_from(body, await _schema_for(body), caller)
        if self.quota is not None:
            await self.quota.check(caller.org_id, add_bytes=len(fields["source_code"]))
        # A concurrent create of the same name can win between our lookup and our insert. A create then
        # is a plain 409; an upsert must still replace, so it runs again and finds the winner's row.
        for _ in range(3):
            try:
                return await self._create_once(caller, fields, upsert=upsert)
            except _NameTaken as race:
                if not upsert:
                    raise Conflict(f"A tool named '{fields['name']}' already exists") from race
        raise Conflict(f"A tool named '{fields['name']}' is being changed concurrently; retry")

    async def _create_once(self, caller: Caller, fields: dict, *, upsert: bool) -> dict:
        now = utcnow()
        async with self.router.write(caller.org_id) as conn:
            current = await tools_store.get_by_name(conn, caller.org_id, fields["name"])
            if current is not None:
                if not upsert:
                    raise Conflict(f"A tool named '{fields['name']}' already exists (use upsert to replace it)")
                if current["tool_type"] != "custom":
                    raise Conflict(f"'{fields['name']}' is a built-in tool and cannot be replaced")
                await tools_store.update(conn, caller.org_id, current["id"], {**fields, "updated_at": now})
                return tool_view({**current, **fields, "updated_at": now})
            row = {
                "organization_id": caller.org_id,
                "id": ids.new_id("tool"),
                "created_by_id": caller.user_id,
                "created_at": now,
                "updated_at": now,
                **fields,
            }
            try:
                await tools_store.insert(conn, row)
            except sa_exc.IntegrityError as e:  # leaving the block rolls the transaction back
                raise _NameTaken() from e
            return tool_view(row)

    async def retrieve(self, caller: Caller, tool_id: str) -> dict:
        async with self.router.read(caller.org_id) as conn:
            row = await tools_store.get(conn, caller.org_id, tool_id)
        if row is None:
            raise NotFound(f"Tool with id '{tool_id}' not found")
        return tool_view(row)

    async def update(self, caller: Caller, tool_id: str, changes: dict) -> dict:
        _check_requirements(changes, self.sandbox)
        if changes.get("source_code"):
            self.sandbox.require_available()
        async with self.router.write(caller.org_id) as conn:
            row = await tools_store.get(conn, caller.org_id, tool_id)
            if row is None:
                raise NotFound(f"Tool with id '{tool_id}' not found")
            if row["tool_type"] != "custom" and ({"source_code", "json_schema"} & changes.keys()):
                raise InvalidInput(f"'{row['name']}' is a built-in tool; its code and schema cannot be changed")
            check_tool_source_size(caller.org_id, changes.get("source_code"), self.max_source_bytes)
            if self.quota is not None and changes.get("source_code"):
                grown = len(changes["source_code"]) - len(row["source_code"] or "")
                await self.quota.check(caller.org_id, add_bytes=grown)
            values = {k: v for k, v in changes.items() if k not in {"metadata_"}}
            if "metadata_" in changes:
                values["metadata"] = changes["metadata_"]
            if changes.get("json_schema") or changes.get("source_code"):
                schema = await _schema_for(
                    {
                        "json_schema": changes.get("json_schema"),
                        "source_code": changes.get("source_code") or row["source_code"] or "",
                    }
                )
                values["json_schema"] = schema
                values["name"] = schema["name"]
                validate_tool_name(schema["name"])
                if "description" not in changes:
                    values["description"] = schema.get("description")
                if schema["name"] != row["name"] and await tools_store.get_by_name(conn, caller.org_id, schema["name"]):
                    raise Conflict(f"A tool named '{schema['name']}' already exists")
            if values.get("return_char_limit") is None:
                values.pop("return_char_limit", None)
            values["updated_at"] = utcnow()
            values["last_updated_by_id"] = caller.user_id
            try:
                await tools_store.update(conn, caller.org_id, tool_id, values)
            except sa_exc.IntegrityError as e:  # a concurrent create or rename took the name first
                raise Conflict(f"A tool named '{values.get('name')}' already exists") from e
            return tool_view({**row, **values})

    async def delete(self, caller: Caller, tool_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await tools_store.delete(conn, caller.org_id, tool_id):
                raise NotFound(f"Tool with id '{tool_id}' not found")

    async def list(
        self,
        caller: Caller,
        *,
        name: str | None = None,
        names: list[str] | None = None,
        tool_ids: list[str] | None = None,
        search: str | None = None,
        tool_types: list[str] | None = None,
        exclude_tool_types: list[str] | None = None,
        return_only_letta_tools: bool = False,
        before: str | None = None,
        after: str | None = None,
        limit: int = 50,
        ascending: bool = False,
    ) -> list[dict]:
        t = tools_table
        filters: list = []
        for kind in (tool_types or []) + (exclude_tool_types or []):
            if kind not in TOOL_TYPES:
                raise InvalidInput(f"Invalid tool_type '{kind}'; must be one of {sorted(TOOL_TYPES)}")
        if name is not None:
            filters.append(t.c.name == name)
        if names:
            filters.append(t.c.name.in_(names))
        if tool_ids:
            filters.append(t.c.id.in_(tool_ids))
        if search:
            filters.append(sa.func.lower(t.c.name).contains(search.lower(), autoescape=True))
        if tool_types:
            filters.append(t.c.tool_type.in_(tool_types))
        if exclude_tool_types:
            filters.append(t.c.tool_type.not_in(exclude_tool_types))
        if return_only_letta_tools:
            filters.append(t.c.tool_type.in_(sorted(LETTA_TOOL_TYPES)))
        async with self.router.read(caller.org_id) as conn:
            rows = await tools_store.list_page(
                conn,
                caller.org_id,
                filters=filters,
                before=before,
                after=after,
                limit=limit,
                ascending=ascending,
            )
        return [tool_view(r) for r in rows]

    # --- agent-scoped ---------------------------------------------------------------------------------

    async def list_for_agent(self, caller: Caller, agent_id: str, *, before, after, limit: int, ascending: bool):
        async with self.router.read(caller.org_id) as conn:
            if not await agents_store.exists(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")
            rows = await tools_store.agent_page(
                conn, caller.org_id, agent_id, before=before, after=after, limit=limit, ascending=ascending
            )
        return [tool_view(r) for r in rows]

    async def attach(self, caller: Caller, agent_id: str, tool_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await agents_store.exists(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")
            if await tools_store.get(conn, caller.org_id, tool_id) is None:
                raise NotFound(f"Tool with id '{tool_id}' not found")
            if tool_id not in await tools_store.attached_ids(conn, caller.org_id, agent_id):
                await tools_store.attach_many(conn, caller.org_id, agent_id, [tool_id])
                await agents_store.update(conn, caller.org_id, agent_id, {"updated_at": utcnow()})

    async def detach(self, caller: Caller, agent_id: str, tool_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await agents_store.exists(conn, caller.org_id, agent_id):
                raise NotFound(f"Agent with ID {agent_id} not found")
            if not await tools_store.detach(conn, caller.org_id, agent_id, tool_id):
                raise NotFound(f"No tool with id '{tool_id}' found for agent '{agent_id}'")
            await agents_store.update(conn, caller.org_id, agent_id, {"updated_at": utcnow()})
