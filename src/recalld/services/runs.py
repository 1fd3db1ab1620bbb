"""Reading runs and steps (contract 7.1, 7.2)."""

from __future__ import annotations

from collections.abc import Callable

from recalld.errors import NotFound
from recalld.services.caller import Caller
from recalld.store import runs as runs_store
from recalld.store.router import StoreRouter
from recalld.store.schema import runs as runs_table
from recalld.store.schema import steps as steps_table

RUN_FIELDS = (
    "id",
    "agent_id",
    "status",
    "created_at",
    "completed_at",
    "background",
    "metadata",
    "request_config",
    "stop_reason",
    "ttft_ns",
    "total_duration_ns",
)


def run_view(row: dict) -> dict:
    out = {k: row.get(k) for k in RUN_FIELDS}
    out.update(
        conversation_id=None,
        base_template_id=None,
        callback_url=None,
        callback_sent_at=None,
        callback_status_code=None,
        callback_error=None,
    )
    return out


def step_view(row: dict) -> dict:
    keys = (
        "id",
        "run_id",
        "agent_id",
        "provider_name",
        "model",
        "model_handle",
        "model_endpoint",
        "context_window_limit",
        "completion_tokens",
        "prompt_tokens",
        "total_tokens",
        "status",
        "stop_reason",
        "created_at",
    )
    return {"origin": None, **{k: row.get(k) for k in keys}}


class RunService:
    def __init__(self, router: StoreRouter, shown_endpoint: Callable[[str | None], str | None] | None = None):
        self.router = router
        # Steps name the endpoint their model was called at: only as tenants may see it (R20); unknown: null.
        self.shown_endpoint = shown_endpoint or (lambda _endpoint: None)

    def _step(self, row: dict) -> dict:
        view = step_view(row)
        view["model_endpoint"] = self.shown_endpoint(view["model_endpoint"])
        return view

    async def retrieve(self, caller: Caller, run_id: str) -> dict:
        async with self.router.read(caller.org_id) as conn:
            row = await runs_store.get(conn, caller.org_id, run_id)
        if row is None:
            raise NotFound(f"Run with id '{run_id}' not found")
        return run_view(row)

    async def usage(self, caller: Caller, run_id: str) -> dict:
        async with self.router.read(caller.org_id) as conn:
            row = await runs_store.get(conn, caller.org_id, run_id)
        if row is None:
            raise NotFound(f"Run with id '{run_id}' not found")
        usage = row.get("usage") or {}
        return {
            "completion_tokens": usage.get("completion_tokens", 0),
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
        }

    async def list(
        self,
        caller: Caller,
        *,
        agent_id: str | None,
        statuses: list[str] | None,
        background: bool | None,
        stop_reason: str | None,
        active: bool,
        before: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
    ) -> list[dict]:
        t = runs_table
        filters: list = []
        if agent_id:
            filters.append(t.c.agent_id == agent_id)
        if statuses:
            filters.append(t.c.status.in_(statuses))
        if active:
            filters.append(t.c.status.in_(runs_store.ACTIVE))
        if background is not None:
            filters.append(t.c.background.is_(background))
        if stop_reason:
            filters.append(t.c.stop_reason == stop_reason)
        async with self.router.read(caller.org_id) as conn:
            rows = await runs_store.list_page(
                conn, caller.org_id, filters=filters, before=before, after=after, limit=limit, ascending=ascending
            )
        return [run_view(r) for r in rows]

    async def delete(self, caller: Caller, run_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if await runs_store.get(conn, caller.org_id, run_id) is None:
                raise NotFound(f"Run with id '{run_id}' not found")
            await conn.execute(
                runs_table.delete().where(runs_table.c.organization_id == caller.org_id, runs_table.c.id == run_id)
            )

    async def steps(
        self, caller: Caller, *, run_id: str | None, agent_id: str | None, before, after, limit: int, ascending: bool
    ) -> list[dict]:
        filters: list = []
        if run_id:
            filters.append(steps_table.c.run_id == run_id)
        if agent_id:
            filters.append(steps_table.c.agent_id == agent_id)
        async with self.router.read(caller.org_id) as conn:
            if run_id and await runs_store.get(conn, caller.org_id, run_id) is None:
                raise NotFound(f"Run with id '{run_id}' not found")
            rows = await runs_store.steps_page(
                conn, caller.org_id, filters=filters, before=before, after=after, limit=limit, ascending=ascending
            )
        return [self._step(r) for r in rows]

    async def step(self, caller: Caller, step_id: str) -> dict:
        async with self.router.read(caller.org_id) as conn:
            row = await runs_store.get_step(conn, caller.org_id, step_id)
        if row is None:
            raise NotFound(f"Step with id '{step_id}' not found")
        return self._step(row)
