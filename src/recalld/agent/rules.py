"""Tool rules: which tools a step may call, and whether a call ends or continues the turn."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RuleBook:
    rules: list[dict]
    agent_type: str
    calls: Counter = field(default_factory=Counter)
    last_tool: str | None = None

    def _of(self, kind: str) -> list[dict]:
        return [r for r in self.rules if r.get("type") == kind]

    def terminal(self, tool_name: str) -> bool:
        """A call of this tool ends the turn (exit_loop; send_message always does for memgpt-style agents)."""
        if any(r["tool_name"] == tool_name for r in self._of("exit_loop")):
            return True
        return tool_name == "send_message" and self.agent_type in ("memgpt_agent", "memgpt_v2_agent")

    def forces_continue(self, tool_name: str) -> bool:
        return any(r["tool_name"] == tool_name for r in self._of("continue_loop"))

    def allowed(self, available: list[str], step_index: int) -> tuple[list[str], str | None]:
        """The tools this step may call, and the one it must call (if any)."""
        names = [n for n in available if not self._exhausted(n)]
        if step_index == 0:
            first = [r["tool_name"] for r in self._of("run_first") if r["tool_name"] in names]
            if first:
                return first, first[0]
        if self.last_tool is not None:
            for rule in self._of("constrain_child_tools"):
                if rule["tool_name"] == self.last_tool and rule.get("children"):
                    children = [n for n in names if n in rule["children"]]
                    return children, children[0] if len(children) == 1 else None
        return names, None

    def _exhausted(self, tool_name: str) -> bool:
        for rule in self._of("max_count_per_step"):
            if rule["tool_name"] == tool_name and rule.get("max_count_limit") is not None:
                if self.calls[tool_name] >= rule["max_count_limit"]:
                    return True
        return False

    def record(self, tool_name: str) -> None:
        self.calls[tool_name] += 1
        self.last_tool = tool_name
