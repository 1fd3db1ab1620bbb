"""Constructing stored message rows (contract 4.3) — used by agent creation and the agent loop."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from recalld import ids
from recalld.agent.prompt import prompt_time


def message_row(
    *,
    org_id: str,
    agent_id: str,
    seq: int,
    role: str,
    created_at: datetime,
    text: str | None = None,
    content: list[dict] | None = None,
    tool_calls: list[dict] | None = None,
    tool_call_id: str | None = None,
    tool_returns: list[dict] | None = None,
    name: str | None = None,
    otid: str | None = None,
    sender_id: str | None = None,
    run_id: str | None = None,
    step_id: str | None = None,
    model: str | None = None,
) -> dict:
    if content is None:
        content = [{"type": "text", "text": text}] if text is not None else []
    return {
        "organization_id": org_id,
        "id": ids.new_id("message"),
        "agent_id": agent_id,
        "seq": seq,
        "role": role,
        "content": content,
        "name": name,
        "tool_calls": tool_calls,
        "tool_call_id": tool_call_id,
        "tool_returns": tool_returns,
        "otid": otid,
        "sender_id": sender_id,
        "run_id": run_id,
        "step_id": step_id,
        "model": model,
        "is_err": None,
        "created_at": created_at,
    }


def pack_tool_result(status_ok: bool, message: object, now: datetime, timezone: str | None) -> str:
    """A tool result as stored and as sent to the model: 2-space-indented JSON."""
    return json.dumps(
        {"status": "OK" if status_ok else "Failed", "message": message, "time": prompt_time(now, timezone)},
        indent=2,
        ensure_ascii=False,
    )


def login_event(now: datetime, timezone: str | None) -> str:
    return json.dumps(
        {"type": "login", "last_login": "Never (first login)", "time": prompt_time(now, timezone)}, indent=2
    )


def memgpt_boot_messages(org_id: str, agent_id: str, first_seq: int, now: datetime, timezone: str | None) -> list[dict]:
    """The boot step memgpt-style agents start with: a send_message call, its return, a login event."""
    call_id = str(uuid.uuid4())
    common = {"org_id": org_id, "agent_id": agent_id, "created_at": now}
    return [
        message_row(
            **common,
            seq=first_seq,
            role="assistant",
            text="Bootup sequence complete. Persona activated. Testing messaging functionality.",
            tool_calls=[
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": "send_message",
                        "arguments": json.dumps({"message": "More human than human is our motto."}),
                    },
                }
            ],
        ),
        message_row(
            **common,
            seq=first_seq + 1,
            role="tool",
            name="send_message",
            tool_call_id=call_id,
            text=pack_tool_result(True, "None", now, timezone),
            tool_returns=[
                {
                    "tool_call_id": call_id,
                    "status": "success",
                    "func_response": "None",
                    "stdout": None,
                    "stderr": None,
                }
            ],
        ),
        message_row(**common, seq=first_seq + 2, role="user", text=login_event(now, timezone)),
    ]
