"""Tool seconds per minute, per organization (R22): the wall time its custom tools ran in the current minute.

A custom tool call over the budget does not run; the model gets a tool error naming the limit. Seconds are
counted per minute of the clock (a fixed window) in Redis when configured — one INCRBYFLOAT after each call
and one GET before it — else, or while Redis is down, in this process. A call is charged when it ends, so
calls already running when the budget runs out finish (each is bounded by the sandbox's own timeout)."""

from __future__ import annotations

import time
from typing import Any

from recalld.agent.tool_runner import ToolOutcome, ToolRunner
from recalld.coord.limit_redis import REDIS_ERRORS, LimitRedis
from recalld.obs import limit_metrics
from recalld.services.limits import LimitBook

WINDOW_S = 60


class ToolBudget:
    def __init__(self, book: LimitBook, redis: LimitRedis | None):
        self.book = book
        self.redis = redis
        self._local: dict[tuple[str, int], float] = {}

    @staticmethod
    def _window() -> int:
        return int(time.time() // WINDOW_S)

    def _key(self, org_id: str, window: int) -> str:
        return self.redis.key("tool_s", org_id, str(window))

    async def spent(self, org_id: str) -> float:
        window = self._window()
        if self.redis is not None and self.redis.usable():
            try:
                value = await self.redis.client.get(self._key(org_id, window))
            except REDIS_ERRORS as e:
                self.redis.failed(e)
            else:
                self.redis.succeeded()
                return float(value or 0) + self._local.get((org_id, window), 0.0)
        return self._local.get((org_id, window), 0.0)

    async def refusal(self, org_id: str) -> str | None:
        """Why the organization may not start a tool call now, or None."""
        budget = self.book.for_org(org_id).max_tool_seconds_per_min
        spent = await self.spent(org_id)
        if spent < budget:
            return None
        limit_metrics.rejected(org_id, "max_tool_seconds_per_min")
        left = WINDOW_S - time.time() % WINDOW_S
        return (f"this organization's custom tools have run {spent:.1f} s this minute, its limit "
                f"(max_tool_seconds_per_min) is {budget:g} s; try again in {left:.0f} s")

    async def charge(self, org_id: str, seconds: float) -> None:
        window = self._window()
        if self.redis is not None and self.redis.usable():
            try:
                pipe = self.redis.client.pipeline(transaction=False)
                pipe.incrbyfloat(self._key(org_id, window), seconds)
                pipe.expire(self._key(org_id, window), 2 * WINDOW_S)
                await pipe.execute()
            except REDIS_ERRORS as e:
                self.redis.failed(e)
            else:
                self.redis.succeeded()
                return
        for key in [k for k in self._local if k[1] < window]:
            del self._local[key]
        self._local[(org_id, window)] = self._local.get((org_id, window), 0.0) + seconds


class BudgetedToolRunner(ToolRunner):
    """The turn's tool runner, with custom tool calls checked against and charged to the organization's budget."""

    def __init__(self, *args: Any, budget: ToolBudget, org_id: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.org_id = org_id

    async def run(self, name: str, arguments: str | dict) -> ToolOutcome:
        tool = self.tools.get(name)
        if tool is None or tool.get("tool_type") != "custom":
            return await super().run(name, arguments)
        refusal = await self.budget.refusal(self.org_id)
        if refusal is not None:
            message = f"Tool '{name}' was not run: {refusal}"
            return ToolOutcome(False, message, None, f"Error executing function {name}: {message}")
        started = time.monotonic()
        try:
            return await super().run(name, arguments)
        finally:
            await self.budget.charge(self.org_id, time.monotonic() - started)
