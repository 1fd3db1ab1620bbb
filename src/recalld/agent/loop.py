"""One step of the agent loop: prompt → model → tools → the step's messages and stop decision.

A step does no I/O of its own beyond the model client, the tool runner and an optional delta callback;
the turn service reads state before it and commits its result after it (docs/ARCHITECTURE.md, the path of
a message). letta_v1 agents continue after any tool call and end on plain text; memgpt-style agents
must call a tool every step and continue only on a heartbeat request, a failed tool or a rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recalld import ids
from recalld.agent.convert import MEMGPT_TYPES, chat_of, derive_otid, message_date, to_chat
from recalld.agent.memory_tools import Memory
from recalld.agent.messages import message_row, pack_tool_result
from recalld.agent.prompt import compile_system_message, prompt_time
from recalld.agent.rules import RuleBook
from recalld.agent.tool_runner import ToolRunner
from recalld.errors import RecalldError
from recalld.llm import tokens
from recalld.llm.types import ChatClient, ChatRequest, ChatResponse, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from recalld.obs import metrics, tracing
from recalld.store.types import utcnow

HEARTBEAT_REASONS = {
    "heartbeat": "Function called using request_heartbeat=true, returning control",
    "failed": "Function call failed, returning control",
    "continue_rule": "Continuing: continue tool rule.",
}

Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class TurnState:
    """What a turn knows about its agent; steps update it as they commit."""

    agent: dict
    system_text: str
    summary: dict | None
    history: list[dict]  # committed in-context rows after the system message (and summary), in order
    tools: dict[str, dict]
    memory: Memory
    recall_count: int = 0
    archival_count: int = 0
    # Reads the archival count when the system message is recompiled (rare: only memory edits need it), so
    # an ordinary turn doesn't count passages.
    count_archival: Callable[[], Awaitable[int]] | None = None

    async def refresh_archival_count(self) -> None:
        if self.count_archival is not None:
            self.archival_count = await self.count_archival()

    @property
    def agent_type(self) -> str:
        return self.agent["agent_type"]

    def prompt_messages(self, pending: list[dict], system_override: str | None = None) -> list[dict[str, Any]]:
        messages = [{"role": "system", "content": system_override or self.system_text}]
        if self.summary is not None:
            messages.append(chat_of(self.summary))
        messages.extend(chat_of(r) for r in self.history)
        messages.extend(to_chat(r) for r in pending)
        return messages

    def recompiled_system(self, now: datetime) -> str:
        return compile_system_message(
            system=self.agent["system"],
            agent_type=self.agent_type,
            agent_id=self.agent["id"],
            blocks=list(self.memory.blocks.values()),
            timezone=self.agent["timezone"],
            now=now,
            recall_count=self.recall_count,
            archival_count=self.archival_count,
        )


@dataclass
class StepResult:
    step_id: str
    messages: list[dict]  # rows to store, in order (inputs of the turn's first step included)
    usage: Usage
    stop_reason: str | None  # None: the loop wants another step
    memory_changed: bool = False
    system_text: str | None = None
    model_response: ChatResponse | None = None
    produced: list[dict] = field(default_factory=list)  # rows the agent produced (not inputs/heartbeats)


def tool_schemas(state: TurnState, names: list[str], rules: RuleBook) -> list[dict[str, Any]]:
    """Function tools for the model; memgpt-style agents get a request_heartbeat flag on non-terminal tools."""
    out = []
    for name in names:
        schema = dict(state.tools[name].get("json_schema") or {"name": name})
        schema["name"] = name
        if state.agent_type in MEMGPT_TYPES and not rules.terminal(name):
            params = json.loads(json.dumps(schema.get("parameters") or {"type": "object", "properties": {}}))
            params.setdefault("properties", {})["request_heartbeat"] = {
                "type": "boolean",
                "description": "Request an immediate heartbeat after the call to run another step.",
            }
            params["required"] = [*params.get("required", []), "request_heartbeat"]
            schema["parameters"] = params
        out.append({"type": "function", "function": schema})
    return out


class StepStreamer:
    """Forwards model deltas to the client as LettaMessage chunks carrying the stored message's id."""

    def __init__(self, emit: Emit, message_id: str, run_id: str, step_id: str, memgpt: bool):
        self.emit = emit
        self.message_id = message_id
        self.common = {
            "name": None,
            "sender_id": None,
            "step_id": step_id,
            "is_err": None,
            "seq_id": None,
            "run_id": run_id,
        }
        self.memgpt = memgpt
        self.parts: list[str] = []  # message types in the order they started, for otid indexes
        self.call_ids: dict[int, str] = {}  # only a call's first delta names its id
        self.date = message_date(utcnow())

    def _head(self, message_type: str) -> dict[str, Any]:
        if message_type not in self.parts:
            self.parts.append(message_type)
        index = self.parts.index(message_type)
        return {
            "id": self.message_id,
            "date": self.date,
            "message_type": message_type,
            "otid": derive_otid(self.message_id, index),
            **self.common,
        }

    async def __call__(self, delta: TextDelta | ReasoningDelta | ToolCallDelta) -> None:
        if isinstance(delta, ReasoningDelta) and delta.text:
            await self.emit(
                {
                    **self._head("reasoning_message"),
                    "reasoning": delta.text,
                    "source": "reasoner_model",
                    "signature": None,
                }
            )
        elif isinstance(delta, TextDelta) and delta.text:
            if self.memgpt:
                await self.emit(
                    {
                        **self._head("reasoning_message"),
                        "reasoning": delta.text,
                        "source": "non_reasoner_model",
                        "signature": None,
                    }
                )
            else:
                await self.emit({**self._head("assistant_message"), "content": delta.text})
        elif isinstance(delta, ToolCallDelta) and not self.memgpt:
            if delta.id:
                self.call_ids[delta.index] = delta.id
            partial = {k: v for k, v in (("name", delta.name), ("arguments", delta.arguments)) if v}
            if partial:
                partial["tool_call_id"] = self.call_ids.get(delta.index)
                await self.emit({**self._head("tool_call_message"), "tool_call": partial, "tool_calls": partial})


async def call_model(llm: ChatClient, request: ChatRequest, streamer: StepStreamer | None) -> ChatResponse:
    started = time.perf_counter()
    try:
        if streamer is None:
            final = await llm.complete(request)
        else:
            final = None
            async for event in llm.stream(request):
                if isinstance(event, ChatResponse):
                    final = event
                else:
                    await streamer(event)
            assert final is not None
    except RecalldError as e:
        metrics.LLM_ERRORS.labels(llm.provider_name, request.model, str(e.status_code)).inc()
        raise
    metrics.LLM_LATENCY.labels(llm.provider_name, request.model).observe(time.perf_counter() - started)
    metrics.LLM_TOKENS.labels(llm.provider_name, request.model, "prompt").inc(final.usage.prompt_tokens)
    metrics.LLM_TOKENS.labels(llm.provider_name, request.model, "completion").inc(final.usage.completion_tokens)
    return final


def _estimate_usage(usage: Usage, request: ChatRequest, response: ChatResponse) -> Usage:
    """Some OpenAI-compatible servers report no usage; count it ourselves then."""
    if usage.prompt_tokens or usage.completion_tokens:
        return usage
    prompt = sum(tokens.count_message(m) for m in request.messages) + tokens.count_tools(request.tools)
    completion = tokens.count_text(response.text or "") + sum(
        tokens.count_text(c.arguments) for c in response.tool_calls
    )
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


async def run_step(
    state: TurnState, pending: list[dict], *, run_id: str, step_index: int, **options: Any
) -> StepResult:
    """Call the model once and run the tools it asks for; returns what the step would store. With tracing on,
    the step is a span: its model call and the transactions of its tools are its children."""
    if not tracing.enabled():
        return await _run_step(state, pending, run_id=run_id, step_index=step_index, **options)
    attributes = {"recalld.agent_id": state.agent["id"], "recalld.run_id": run_id, "recalld.step": step_index}
    with tracing.span("step", attributes):
        return await _run_step(state, pending, run_id=run_id, step_index=step_index, **options)


async def _run_step(
    state: TurnState,
    pending: list[dict],
    *,
    llm: ChatClient,
    runner: ToolRunner,
    rules: RuleBook,
    run_id: str,
    step_index: int,
    last_step: bool,
    emit_delta: Emit | None = None,
    system_override: str | None = None,
) -> StepResult:
    agent = state.agent
    org_id, agent_id = agent["organization_id"], agent["id"]
    llm_config = agent["llm_config"]
    memgpt = state.agent_type in MEMGPT_TYPES
    step_id = ids.new_id("step")
    assistant_id = ids.new_id("message")

    allowed, forced = rules.allowed(list(state.tools), step_index)
    tool_choice: str | dict | None = None
    if allowed:
        tool_choice = "required" if memgpt else "auto"
        if forced:
            tool_choice = {"type": "function", "function": {"name": forced}}
    request = ChatRequest(
        model=llm_config["model"],
        messages=state.prompt_messages(pending, system_override),
        tools=tool_schemas(state, allowed, rules),
        tool_choice=tool_choice,
        max_tokens=llm_config.get("max_tokens"),
        temperature=llm_config.get("temperature"),
        parallel_tool_calls=bool(llm_config.get("parallel_tool_calls")) and not state.agent.get("tool_rules"),
    )
    streamer = StepStreamer(emit_delta, assistant_id, run_id, step_id, memgpt) if emit_delta else None
    response = await call_model(llm, request, streamer)
    usage = _estimate_usage(response.usage, request, response)
    now = utcnow()
    stamp = {
        "org_id": org_id,
        "agent_id": agent_id,
        "seq": 0,
        "run_id": run_id,
        "step_id": step_id,
        "model": llm_config.get("model"),
    }

    text = response.text or ""
    content: list[dict] = []
    if response.reasoning:
        content.append({"type": "reasoning", "reasoning": response.reasoning})
    if text:
        content.append({"type": "text", "text": text})
    calls = response.tool_calls if allowed else []
    if not memgpt and not calls:
        if not content:
            return StepResult(step_id, list(pending), usage, "end_turn", model_response=response)
        reply = message_row(**stamp, role="assistant", created_at=now, content=content)
        reply["id"] = assistant_id
        stop = "max_tokens_exceeded" if response.finish_reason == "length" else "end_turn"
        return StepResult(step_id, [*pending, reply], usage, stop, model_response=response, produced=[reply])
    if memgpt and not calls:
        rows = list(pending)
        produced = []
        if content:
            reply = message_row(**stamp, role="assistant", created_at=now, content=content)
            reply["id"] = assistant_id
            rows.append(reply)
            produced.append(reply)
        return StepResult(step_id, rows, usage, "no_tool_call", model_response=response, produced=produced)

    if not request.parallel_tool_calls:
        calls = calls[:1]
    tool_calls = []
    for call in calls:
        tool_calls.append(
            {
                "id": call.id or f"call_{ids.new_id('tc')[3:27]}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
        )
    assistant = message_row(**stamp, role="assistant", created_at=now, content=content, tool_calls=tool_calls)
    assistant["id"] = assistant_id
    rows = [*pending, assistant]
    produced = [assistant]
    stop: str | None = None
    continue_reason: str | None = None
    memory_changed = False
    for call in tool_calls:
        name = call["function"]["name"]
        arguments = call["function"]["arguments"]
        heartbeat = False
        if memgpt:
            try:
                parsed = json.loads(arguments or "{}")
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                heartbeat = bool(parsed.pop("request_heartbeat", False))
                arguments = parsed
        if name not in allowed:
            outcome_ok, result, stdout, stderr = False, f"Tool '{name}' may not be called now", None, None
        else:
            outcome = await runner.run(name, arguments)
            outcome_ok, result, stdout, stderr = outcome.ok, outcome.result, outcome.stdout, outcome.stderr
            memory_changed = memory_changed or (outcome.ok and outcome.memory_changed)
            rules.record(name)
        tool_time = utcnow()
        ret = message_row(
            **{**stamp, "model": None},
            role="tool",
            created_at=tool_time,
            name=name,
            tool_call_id=call["id"],
            text=pack_tool_result(outcome_ok, result if result is not None else "None", tool_time, agent["timezone"]),
            tool_returns=[
                {
                    "tool_call_id": call["id"],
                    "status": "success" if outcome_ok else "error",
                    "func_response": result if isinstance(result, str) else json.dumps(result, default=str),
                    "stdout": stdout,
                    "stderr": stderr,
                }
            ],
        )
        rows.append(ret)
        produced.append(ret)
        if rules.terminal(name) and outcome_ok:
            stop = "tool_rule" if not memgpt or name != "send_message" else "end_turn"
        elif memgpt:
            if not outcome_ok:
                continue_reason = "failed"
            elif rules.forces_continue(name):
                continue_reason = continue_reason or "continue_rule"
            elif heartbeat:
                continue_reason = continue_reason or "heartbeat"
    if memgpt and stop is None:
        if continue_reason is None:
            stop = "end_turn"
        elif not last_step:
            beat_time = utcnow()
            beat = json.dumps(
                {
                    "type": "heartbeat",
                    "reason": f"[This is an automated system message hidden from the user] "
                    f"{HEARTBEAT_REASONS[continue_reason]}",
                    "time": prompt_time(beat_time, agent["timezone"]),
                },
                indent=2,
            )
            rows.append(message_row(**{**stamp, "model": None}, role="user", created_at=beat_time, text=beat))
    system_text = None
    if memory_changed:
        await state.refresh_archival_count()
        system_text = state.recompiled_system(utcnow())
    return StepResult(
        step_id,
        rows,
        usage,
        stop,
        memory_changed=memory_changed,
        system_text=system_text,
        model_response=response,
        produced=produced,
    )
