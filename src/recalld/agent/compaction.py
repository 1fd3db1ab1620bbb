"""Keeping the prompt inside the context window: older messages leave the context and a summary takes
their place (contract 8.5, R14). Evicted messages stay in the history and stay searchable."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass

from recalld.agent.convert import chat_of, text_of, to_chat
from recalld.agent.loop import TurnState
from recalld.agent.messages import message_row
from recalld.agent.prompt import prompt_time
from recalld.llm import tokens
from recalld.llm.types import ChatClient, ChatRequest
from recalld.store.types import utcnow

log = logging.getLogger(__name__)

TRIGGER_FRACTION = 0.9  # compact when the prompt would pass this share of the window
TARGET_FRACTION = 0.7  # ... down to this share
FIRST_CUT = 0.3
CUT_STEP = 0.1
CLIP_CHARS = 50_000

SUMMARIZER_PROMPT = (
    "You summarise the earlier part of a conversation between an AI agent and a user so the agent can "
    "continue it without the original messages. Keep names, facts, decisions, open questions, commitments "
    "and anything the agent learned about the user. Write plain prose, at most a few paragraphs."
)

_TOKEN_CACHE: OrderedDict[str, int] = OrderedDict()
_TOKEN_CACHE_SIZE = 100_000


def row_tokens(row: dict) -> int:
    """Tokens of one stored message in the prompt; cached by message id, since stored messages don't change."""
    key = row["id"]
    cached = _TOKEN_CACHE.get(key)
    if cached is None:
        cached = tokens.count_message(chat_of(row))
        _TOKEN_CACHE[key] = cached
        if len(_TOKEN_CACHE) > _TOKEN_CACHE_SIZE:
            _TOKEN_CACHE.popitem(last=False)
    return cached


def prompt_tokens(state: TurnState, pending: list[dict], tools_tokens: int) -> int:
    total = tokens.count_text(state.system_text) + tokens.MESSAGE_OVERHEAD_TOKENS + tools_tokens
    if state.summary is not None:
        total += row_tokens(state.summary)
    total += sum(row_tokens(r) for r in state.history)
    total += sum(tokens.count_message(to_chat(r)) for r in pending)
    return total


@dataclass
class EvictionPlan:
    evict: int  # how many of state.history leave the context
    fits: bool  # whether what remains fits the target


def plan_eviction(state: TurnState, pending: list[dict], tools_tokens: int, window: int) -> EvictionPlan | None:
    """None when the prompt fits; otherwise how much of the history to evict (sliding window)."""
    total = prompt_tokens(state, pending, tools_tokens)
    if total <= TRIGGER_FRACTION * window:
        return None
    history = state.history
    target = TARGET_FRACTION * window
    fraction = FIRST_CUT
    while True:
        cut = min(len(history), max(1, int(len(history) * fraction)))
        # Tool returns stay with their calls: the kept part may not start with a tool message.
        while cut < len(history) and history[cut]["role"] == "tool":
            cut += 1
        remaining = total - sum(row_tokens(r) for r in history[:cut])
        if remaining <= target or cut >= len(history):
            return EvictionPlan(evict=cut, fits=remaining <= window)
        fraction += CUT_STEP


def _transcript(rows: list[dict], previous_summary: dict | None) -> str:
    lines = []
    if previous_summary is not None:
        lines.append(f"(summary of what came before) {text_of(previous_summary)}")
    for row in rows:
        text = text_of(row)
        for call in row.get("tool_calls") or []:
            fn = call.get("function") or {}
            text += f" [called {fn.get('name')}({fn.get('arguments')})]"
        if text:
            lines.append(f"{row['role']}: {text}")
    transcript = "\n".join(lines)
    return transcript[-CLIP_CHARS:]


def fallback_summary(rows: list[dict], previous_summary: dict | None) -> str:
    """Used when the summarising model fails: the latest part of the transcript, clipped."""
    return "Earlier conversation (abridged): " + _transcript(rows, previous_summary)[-4000:]


async def summarize(llm: ChatClient, model: str, rows: list[dict], previous_summary: dict | None) -> str:
    request = ChatRequest(
        model=model,
        messages=[
            {"role": "system", "content": SUMMARIZER_PROMPT},
            {"role": "user", "content": _transcript(rows, previous_summary)},
        ],
        max_tokens=1024,
    )
    try:
        response = await llm.complete(request)
    except Exception as e:  # noqa: BLE001 - a failed summary must not fail the turn
        log.warning("summarising %d messages failed (%s); keeping an abridged transcript", len(rows), e)
        return fallback_summary(rows, previous_summary)
    return (response.text or "").strip()[:CLIP_CHARS] or fallback_summary(rows, previous_summary)


def summary_message(state: TurnState, evicted: int, summary: str, run_id: str | None) -> dict:
    now = utcnow()
    agent = state.agent
    packed = json.dumps(
        {
            "type": "system_alert",
            "message": (
                f"Note: {evicted} messages from the beginning of the conversation have been hidden from view due to "
                f"memory constraints. The following is a summary of the previous messages:\n {summary}"
            ),
            "time": prompt_time(now, agent["timezone"]),
        },
        indent=2,
        ensure_ascii=False,
    )
    return message_row(
        org_id=agent["organization_id"],
        agent_id=agent["id"],
        seq=0,
        role="user",
        created_at=now,
        text=packed,
        run_id=run_id,
    )
