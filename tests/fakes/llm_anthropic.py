"""A deterministic Anthropic Messages server over real HTTP, scripted like the OpenAI fake.

Same directives as `tests.fakes.llm_openai` (`CALL <tool> <json-args>`, `FAIL <status>`, `SLOW <ms>`,
otherwise `ack <text>`); a `CALL` answers with a `tool_use` block, and once its `tool_result` comes back
the reply is `done <tool>`. Requests need `x-api-key` and `anthropic-version` headers, as the real API's.
Run alone: `python -m tests.fakes.llm_anthropic --port N --latency-ms M`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from tests.fakes.llm_openai import (
    ScriptedHandler,
    ScriptedServer,
    cli_args,
    json_pieces,
    parse_script,
    serve_forever,
    text_pieces,
    tokens,
)

CREATED_AT = "2025-01-01T00:00:00Z"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _text_of(content: Any) -> str:
    return "".join(b.get("text", "") for b in _blocks(content) if b.get("type") == "text")


def _tool_use_name(messages: list[dict[str, Any]], tool_use_id: str | None) -> str:
    for message in reversed(messages):
        for block in _blocks(message.get("content")):
            if block.get("type") == "tool_use" and block.get("id") == tool_use_id:
                return str(block.get("name", "tool"))
    return "tool"


class ScriptedAnthropic(ScriptedServer):
    """Anthropic-compatible fake: `GET /v1/models` (paged) and `POST /v1/messages`."""

    def __init__(
        self,
        models: Iterable[str] = ("claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"),
        latency_ms: float = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ):
        super().__init__(models, latency_ms, host, port, api_key)
        self._message_count = 0

    def send_error_body(self, handler: ScriptedHandler, status: int, message: str) -> None:
        error_type = _ERROR_TYPES.get(status, "api_error")
        headers = {"retry-after": "1"} if status == 429 else None
        handler.send_json(
            status, {"type": "error", "error": {"type": error_type, "message": message}}, headers
        )

    def _authorized(self, handler: ScriptedHandler) -> bool:
        # The real API takes the key as x-api-key; newer SDKs may send it as a Bearer token instead.
        bearer = handler.headers.get("Authorization", "")
        key = handler.headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)
        if not key or (self.api_key is not None and key != self.api_key):
            self.send_error_body(handler, 401, "invalid x-api-key")
            return False
        if not handler.headers.get("anthropic-version"):
            self.send_error_body(handler, 400, "anthropic-version: header is required")
            return False
        return True

    def handle_get(self, handler: ScriptedHandler, path: str, query: dict[str, list[str]]) -> None:
        if path != "/v1/models":
            self.send_error_body(handler, 404, f"Unknown path {path}")
            return
        if not self._authorized(handler):
            return
        ids = self._model_ids()
        limit = int(query.get("limit", ["20"])[0])
        after = query.get("after_id", [None])[0]
        start = ids.index(after) + 1 if after in ids else 0
        page = ids[start : start + limit]
        data = [{"type": "model", "id": m, "display_name": m, "created_at": CREATED_AT} for m in page]
        handler.send_json(
            200,
            {
                "data": data,
                "has_more": start + limit < len(ids),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            },
        )

    def handle_post(self, handler: ScriptedHandler, path: str, body: dict[str, Any], body_len: int) -> None:
        if path != "/v1/messages":
            self.send_error_body(handler, 404, f"Unknown path {path}")
            return
        if not self._authorized(handler):
            return
        with self._lock:
            self._message_count += 1
            number = self._message_count
        messages = body.get("messages") or []
        last_user_text = next(
            (_text_of(m.get("content")) for m in reversed(messages) if _is_user_text(m)), ""
        )
        script = parse_script(last_user_text)
        self._wait(script.slow_ms)
        if script.fail_status is not None:
            self.send_error_body(handler, script.fail_status, f"scripted failure {script.fail_status}")
            return
        model = body.get("model", "")
        if model not in self.models:
            self.send_error_body(handler, 404, f"model: {model}")
            return
        block = self._reply(messages, script, body.get("tools") or [], number)
        out_chars = len(block.get("text", "")) + len(json.dumps(block.get("input", "")))
        usage = {"input_tokens": tokens(body_len), "output_tokens": tokens(out_chars)}
        stop_reason = "tool_use" if block["type"] == "tool_use" else "end_turn"
        message = {
            "id": f"msg_{number:06d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if body.get("stream"):
            handler.send_sse(
                f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in _stream_events(message)
            )
        else:
            handler.send_json(200, message)

    @staticmethod
    def _reply(
        messages: list[dict[str, Any]], script: Any, tools: list[dict[str, Any]], number: int
    ) -> dict[str, Any]:
        last_blocks = _blocks(messages[-1].get("content")) if messages else []
        results = [b for b in last_blocks if b.get("type") == "tool_result"]
        if results:
            return {
                "type": "text",
                "text": f"done {_tool_use_name(messages, results[-1].get('tool_use_id'))}",
            }
        offered = {t.get("name") for t in tools if isinstance(t, dict)}
        if script.call and script.call[0] in offered:
            name, args = script.call
            return {"type": "tool_use", "id": f"toolu_{number:06d}", "name": name, "input": args}
        return {"type": "text", "text": f"ack {script.text}"}


def _is_user_text(message: dict[str, Any]) -> bool:
    # A user turn that only carries tool results is not something the user said.
    return message.get("role") == "user" and any(
        b.get("type") == "text" for b in _blocks(message.get("content"))
    )


def _stream_events(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    block = message["content"][0]
    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    yield {"type": "message_start", "message": start}
    yield {"type": "ping"}
    if block["type"] == "text":
        yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        for piece in text_pieces(block["text"]):
            yield {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
    else:
        opening = {**block, "input": {}}
        yield {"type": "content_block_start", "index": 0, "content_block": opening}
        for piece in json_pieces(json.dumps(block["input"])):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield {"type": "content_block_delta", "index": 0, "delta": delta}
    yield {"type": "content_block_stop", "index": 0}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": message["usage"]["output_tokens"]},
    }
    yield {"type": "message_stop"}


def main(argv: list[str] | None = None) -> None:
    args = cli_args(argv, "claude-3-5-haiku-20241022,claude-sonnet-4-20250514")
    models = [m for m in args.models.split(",") if m]
    serve_forever(ScriptedAnthropic(models, args.latency_ms, args.host, args.port, args.api_key))


if __name__ == "__main__":
    main(sys.argv[1:])
