"""What the search and archival tools of a turn reach outside the loop: the history and archival memory,
each read in its own short transaction (never inside a step's write)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from recalld.agent.convert import text_of
from recalld.agent.memory_tools import ToolError
from recalld.agent.prompt import agent_zone, prompt_time
from recalld.sandbox.requirements import requirement_strings
from recalld.secrets_box import SEALED_PREFIX
from recalld.services.caller import Caller
from recalld.store import messages as messages_store
from recalld.store import sandbox_configs as sandbox_configs_store
from recalld.store.router import StoreRouter
from recalld.store.types import utcnow

SEARCHABLE_ROLES = ("assistant", "user")


def parse_when(value: str | None, timezone: str | None, *, end: bool) -> datetime | None:
    """An ISO date or datetime in the agent's zone; a date alone covers its whole day."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise ToolError(f"Error: '{value}' is not an ISO date or datetime (e.g. 2026-11-24 or 2026-11-24T15:30)") from e
    if len(value) <= 10:
        moment = datetime.combine(moment.date(), time.max if end else time.min)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=agent_zone(timezone))
    return moment.astimezone(UTC)


def time_ago(then: datetime, now: datetime) -> str:
    seconds = int((now - then).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


class TurnToolServices:
    def __init__(
        self,
        router: StoreRouter,
        caller: Caller,
        agent: dict,
        passages: Any | None,
        sandbox: Any | None = None,
        *,
        secrets: dict[str, str] | None = None,
        box: Any | None = None,
        network: bool = False,
        limits: Any | None = None,
    ):
        self.router = router
        self.caller = caller
        self.agent = agent
        self.passages = passages
        self.sandbox = sandbox
        # The agent's secrets, already decrypted (they are stored sealed: secrets_box.py).
        self.secrets = secrets or {}
        # The SecretsBox that opens the sandbox-config variables (stored sealed: services/sandbox_configs.py).
        self.box = box
        # The organization's tool_network switch (R22/R23): the sandbox's proxied network, else none.
        self.network = network
        # The organization's tool wall time, memory and process count (a sandbox ToolRunLimits; None: settings).
        self.limits = limits
        self._tool_env: dict[str, str] | None = None

    async def run_custom_tool(self, source: str, name: str, args: dict, pip_requirements: list | None) -> Any:
        """A custom tool in the sandbox, its environment: the organization's sandbox-config variables, then the
        agent's secrets over them (read once per turn)."""
        if self.sandbox is None:
            raise ToolError(f"Error: custom tool '{name}' cannot run: this server has no tool sandbox")
        try:
            requirements = requirement_strings(pip_requirements or [])
        except ValueError as e:
            raise ToolError(f"Error: the tool's pip_requirements are unusable: {e}") from e
        if self._tool_env is None:
            async with self.router.read(self.caller.org_id) as conn:
                stored = await sandbox_configs_store.environment(conn, self.caller.org_id, "local")
            configured = {key: self._open(value) for key, value in stored.items()}
            self._tool_env = {**configured, **self.secrets}
        return await self.sandbox.run(
            self.caller.org_id, source, name, args, self._tool_env, requirements, network=self.network,
            limits=self.limits,
        )

    def _open(self, stored: str) -> str:
        if self.box is not None:
            return self.box.open_value(stored)
        if stored.startswith(SEALED_PREFIX):
            raise ToolError("Error: the sandbox's environment variables are sealed and this server has no secrets key")
        return stored

    async def conversation_search(
        self, query: str | None, roles: list[str] | None, limit: int, start_date: str | None, end_date: str | None
    ) -> Any:
        wanted = [r for r in (roles or SEARCHABLE_ROLES) if r in ("assistant", "user", "tool")]
        tz = self.agent["timezone"]
        start, end = parse_when(start_date, tz, end=False), parse_when(end_date, tz, end=True)
        limit = max(1, min(int(limit), 100))
        async with self.router.read(self.caller.org_id) as conn:
            rows = await messages_store.search_text(
                conn,
                self.caller.org_id,
                self.agent["id"],
                query=query,
                roles=wanted,
                start=start,
                end=end,
                exclude_tool_call_names=("conversation_search",),
                limit=limit,
            )
        needle = (query or "").lower()
        now = utcnow()
        results = []
        for row in rows:
            text = text_of(row)
            if needle and needle not in text.lower():
                continue
            results.append(
                {
                    "timestamp": prompt_time(row["created_at"], tz),
                    "time_ago": time_ago(row["created_at"], now),
                    "role": row["role"],
                    "content": text,
                }
            )
            if len(results) >= limit:
                break
        if not results:
            return "No results found."
        return {"message": f"Showing {len(results)} results:", "results": results}

    def _archive(self) -> Any:
        if self.passages is None:
            raise ToolError("Error: archival memory is not available on this server")
        return self.passages

    async def archival_insert(self, content: str, tags: list[str] | None) -> None:
        await self._archive().insert(self.caller, self.agent["id"], content, tags)

    async def archival_search(
        self,
        query: str,
        tags: list[str] | None,
        tag_match_mode: str,
        top_k: int | None,
        start_datetime: str | None,
        end_datetime: str | None,
    ) -> Any:
        tz = self.agent["timezone"]
        results = await self._archive().search(
            self.caller,
            self.agent["id"],
            query,
            top_k=int(top_k or 5),
            tags=tags,
            tag_match_mode=tag_match_mode,
            start_datetime=parse_when(start_datetime, tz, end=False),
            end_datetime=parse_when(end_datetime, tz, end=True),
        )
        return results

