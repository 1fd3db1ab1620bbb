"""Reading an agent's history (contract 4.6): cursors are chronological whatever the order, a page is an
index range read on (agent_id, seq), and the page comes back oldest first."""

from __future__ import annotations

from recalld.agent.convert import rows_to_letta
from recalld.errors import NotFound
from recalld.services.caller import Caller
from recalld.store import agents as agents_store
from recalld.store import messages as messages_store
from recalld.store import runs as runs_store
from recalld.store.paging import clamp_limit
from recalld.store.router import StoreRouter


class HistoryService:
    def __init__(self, router: StoreRouter):
        self.router = router

    async def list(
        self,
        caller: Caller,
        agent_id: str,
        *,
        before: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
        types: list[str] | None,
    ) -> list[dict]:
        async with self.router.read(caller.org_id) as conn:
            agent = await agents_store.get(conn, caller.org_id, agent_id)
            if agent is None:
                raise NotFound(f"Agent with ID {agent_id} not found")
            after_seq = await self._cursor(conn, caller.org_id, agent_id, after)
            before_seq = await self._cursor(conn, caller.org_id, agent_id, before)
            rows = await messages_store.page_by_seq(
                conn,
                caller.org_id,
                agent_id,
                after_seq=after_seq,
                before_seq=before_seq,
                limit=clamp_limit(limit),
                newest=not ascending,
            )
        messages = rows_to_letta(rows, agent["agent_type"])
        return [m for m in messages if m["message_type"] in types] if types else messages

    async def _cursor(self, conn, org_id: str, agent_id: str, message_id: str | None) -> int | None:  # noqa: ANN001
        if message_id is None:
            return None
        seq = await messages_store.seq_of(conn, org_id, agent_id, message_id)
        if seq is None:
            raise NotFound(f"No message found with id '{message_id}' for agent '{agent_id}'.")
        return seq

    async def run_messages(
        self,
        caller: Caller,
        run_id: str,
        *,
        limit: int,
        ascending: bool,
        types: list[str] | None,
        before: str | None = None,
        after: str | None = None,
    ) -> list[dict]:
        async with self.router.read(caller.org_id) as conn:
            run = await runs_store.get(conn, caller.org_id, run_id)
            if run is None:
                raise NotFound(f"Run with id '{run_id}' not found")
            agent = await agents_store.get(conn, caller.org_id, run["agent_id"])
            rows = await messages_store.for_run(conn, caller.org_id, run_id)
        # Cursors are message ids of the run, chronological like the agent's history (the SDK pages with them).
        seq_of = {r["id"]: r["seq"] for r in rows}
        for cursor, keep in ((after, lambda seq, c: seq > c), (before, lambda seq, c: seq < c)):
            if cursor is not None:
                if cursor not in seq_of:
                    raise NotFound(f"No message found with id '{cursor}' in run '{run_id}'.")
                rows = [r for r in rows if keep(r["seq"], seq_of[cursor])]
        agent_type = agent["agent_type"] if agent else "letta_v1_agent"
        rows = rows if ascending else rows[::-1]
        messages = rows_to_letta(rows[: clamp_limit(limit)], agent_type)
        return [m for m in messages if m["message_type"] in types] if types else messages
