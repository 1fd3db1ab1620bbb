"""Stored messages in the two shapes they leave in: chat-completions messages for the model, and the
LettaMessage union for clients (contract 4.2, 4.3)."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

MEMGPT_TYPES = frozenset({"memgpt_agent", "memgpt_v2_agent"})
ASSISTANT_TOOL = "send_message"
ASSISTANT_KWARG = "message"


def text_of(row: dict) -> str:
    parts = row.get("content") or []
    return "".join(p.get("text", "") for p in parts if p.get("type") == "text")


def reasoning_of(row: dict) -> str:
    parts = row.get("content") or []
    return "".join(p.get("reasoning", "") for p in parts if p.get("type") == "reasoning")


def to_chat(row: dict) -> dict[str, Any]:
    """One stored message as the model sees it."""
    role = row["role"]
    if role == "assistant":
        message: dict[str, Any] = {"role": "assistant", "content": text_of(row) or None}
        if row.get("tool_calls"):
            message["tool_calls"] = row["tool_calls"]
        return message
    if role == "tool":
        return {"role": "tool", "tool_call_id": row.get("tool_call_id") or "", "content": text_of(row)}
    if role == "summary":
        return {"role": "user", "content": text_of(row)}
    return {"role": role, "content": text_of(row)}


_CHAT: OrderedDict[str, dict[str, Any]] = OrderedDict()
_CHAT_MAX = 20_000


def chat_of(row: dict) -> dict[str, Any]:
    """to_chat for a stored message, kept by message id: stored messages don't change (the system message,
    rewritten in place, never comes through here), and the same rows make every turn's prompt. Read-only."""
    key = row["id"]
    chat = _CHAT.get(key)
    if chat is None:
        chat = _CHAT[key] = to_chat(row)
        if len(_CHAT) > _CHAT_MAX:
            _CHAT.popitem(last=False)
    return chat


def derive_otid(message_id: str, index: int) -> str:
    """Output otids come from the message id: its uuid with the low 7 bits replaced by the part index."""
    raw = uuid.UUID(message_id.split("-", 1)[1]).int
    return str(uuid.UUID(int=(raw & ~0x7F) | (index & 0x7F)))


def message_date(created_at: datetime) -> str:
    return created_at.replace(microsecond=0).isoformat()


def _common(row: dict, message_type: str, index: int) -> dict[str, Any]:
    return {
        "id": row["id"],
        "date": message_date(row["created_at"]),
        "name": row.get("name"),
        "message_type": message_type,
        "otid": row.get("otid") if row["role"] == "user" and row.get("otid") else derive_otid(row["id"], index),
        "sender_id": row.get("sender_id"),
        "step_id": row.get("step_id"),
        "is_err": row.get("is_err"),
        "seq_id": None,
        "run_id": row.get("run_id"),
    }


def unpack_tool_result(text: str) -> str:
    """The `message` field of the packed {"status","message","time"} JSON, as a string."""
    try:
        packed = json.loads(text)
    except ValueError:
        return text
    if isinstance(packed, dict) and "message" in packed:
        message = packed["message"]
        return message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    return text


def _unwrap_user(text: str) -> str:
    if text.startswith("{"):
        try:
            packed = json.loads(text)
        except ValueError:
            return text
        if isinstance(packed, dict) and packed.get("type") == "user_message" and isinstance(packed.get("message"), str):
            return packed["message"]
    return text


def _tool_call(call: dict) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"name": fn.get("name"), "arguments": fn.get("arguments") or "", "tool_call_id": call.get("id")}


def _send_message_text(call: dict) -> str | None:
    fn = call.get("function") or {}
    if fn.get("name") != ASSISTANT_TOOL:
        return None
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except ValueError:
        return None
    value = args.get(ASSISTANT_KWARG) if isinstance(args, dict) else None
    return value if isinstance(value, str) else None


def to_letta(row: dict, agent_type: str) -> list[dict[str, Any]]:
    """One stored message as the LettaMessages clients see (0..n of them).

    memgpt-style agents speak through `send_message`: its call becomes an assistant_message, its return
    is hidden, and the model's own text is its inner reasoning.
    """
    role = row["role"]
    memgpt = agent_type in MEMGPT_TYPES
    if role == "system":
        return [{**_common(row, "system_message", 0), "content": text_of(row)}]
    if role in ("user", "summary"):
        content: Any = _unwrap_user(text_of(row))
        parts = row.get("content") or []
        if any(p.get("type") != "text" for p in parts):
            content = parts
        return [{**_common(row, "user_message", 0), "content": content}]
    if role == "assistant":
        out: list[dict[str, Any]] = []
        reasoning = reasoning_of(row)
        text = text_of(row)
        if reasoning:
            out.append(
                {
                    **_common(row, "reasoning_message", len(out)),
                    "reasoning": reasoning,
                    "source": "reasoner_model",
                    "signature": None,
                }
            )
        if text:
            if memgpt:
                out.append(
                    {
                        **_common(row, "reasoning_message", len(out)),
                        "reasoning": text,
                        "source": "non_reasoner_model",
                        "signature": None,
                    }
                )
            else:
                out.append({**_common(row, "assistant_message", len(out)), "content": text})
        calls = list(row.get("tool_calls") or [])
        other_calls = []
        for call in calls:
            said = _send_message_text(call) if memgpt else None
            if said is not None:
                out.append({**_common(row, "assistant_message", len(out)), "content": said})
            else:
                other_calls.append(call)
        if other_calls:
            converted = [_tool_call(c) for c in other_calls]
            out.append(
                {**_common(row, "tool_call_message", len(out)), "tool_call": converted[0], "tool_calls": converted}
            )
        return out
    if role == "tool":
        if memgpt and row.get("name") == ASSISTANT_TOOL:
            return []
        returns = row.get("tool_returns") or [{}]
        first = returns[0]
        status = first.get("status") or "success"
        return [
            {
                **_common(row, "tool_return_message", 0),
                "tool_return": unpack_tool_result(text_of(row)),
                "status": status,
                "tool_call_id": row.get("tool_call_id"),
                "stdout": captured_lines(first.get("stdout")),
                "stderr": captured_lines(first.get("stderr")),
                "tool_returns": [
                    {
                        "type": "tool",
                        "tool_return": unpack_tool_result(text_of(row)),
                        "status": r.get("status") or status,
                        "tool_call_id": r.get("tool_call_id") or row.get("tool_call_id"),
                        "stdout": captured_lines(r.get("stdout")),
                        "stderr": captured_lines(r.get("stderr")),
                    }
                    for r in returns
                ],
            }
        ]
    return []


def captured_lines(value: Any) -> list[str] | None:
    """A tool's captured output as Letta shapes it: a list of strings. Rows stored before it was one hold a
    plain string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def rows_to_letta(rows: list[dict], agent_type: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in rows:
        out.extend(to_letta(row, agent_type))
    return out
