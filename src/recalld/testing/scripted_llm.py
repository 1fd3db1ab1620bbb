"""A deterministic OpenAI-compatible server over real HTTP, scripted by the text of the last user message.

Script (directives may appear anywhere in the last user message, and combine):
  * default                       → reply `ack <last user text>`
  * `CALL <tool> <json-args>`     → a call of <tool> when the request offers it; once the tool's result
                                    comes back (last message role `tool`), reply `done <tool>`
  * `FAIL <status>`               → answer that HTTP status with an OpenAI-style error body
  * `THEN FAIL <status>`          → the same, but only once a tool's result has come back (a failure after a
                                    committed step)
  * `SLOW <ms>`                   → wait that long before answering

It lives in the installed package so that `recalld bench --fake-llm` can run it without the repository; the
test suite uses it through `tests.fakes.llm_openai`. Also holds the pieces shared with the Anthropic fake
(`ScriptedServer`, `Script`, `parse_script`).
Run alone: `python -m recalld.testing.scripted_llm --port N --latency-ms M` prints the base URL and serves.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Fixed so replies are byte-for-byte the same from run to run.
CREATED = 1_700_000_000


class _DeepBacklogServer(http.server.ThreadingHTTPServer):
    # socketserver's listen backlog of 5 drops the connection bursts of a benchmark at concurrency 256.
    request_queue_size = 1024


@dataclass
class Script:
    """What the fake does for one request, read from the last user message."""

    text: str
    fail_status: int | None = None
    fail_after_tool_status: int | None = None
    slow_ms: int = 0
    call: tuple[str, dict[str, Any]] | None = None


_FAIL = re.compile(r"(?<!THEN )\bFAIL\s+(\d{3})\b")
_THEN_FAIL = re.compile(r"\bTHEN\s+FAIL\s+(\d{3})\b")
_SLOW = re.compile(r"\bSLOW\s+(\d+)\b")
_CALL = re.compile(r"\bCALL\s+([A-Za-z_][\w.-]*)")


def _unwrap(text: str) -> str:
    # Some agent types send the user's words inside a JSON envelope ({"type": "user_message", "message": …});
    # the script (and the ack) is about the words.
    if text.startswith("{"):
        try:
            envelope = json.loads(text)
        except ValueError:
            return text
        if isinstance(envelope, dict) and isinstance(envelope.get("message"), str):
            return envelope["message"]
    return text


def parse_script(text: str) -> Script:
    """Read the directives out of a user message."""
    text = _unwrap(text)
    script = Script(text=text)
    if m := _FAIL.search(text):
        script.fail_status = int(m.group(1))
    if m := _THEN_FAIL.search(text):
        script.fail_after_tool_status = int(m.group(1))
    if m := _SLOW.search(text):
        script.slow_ms = int(m.group(1))
    if m := _CALL.search(text):
        rest = text[m.end() :].lstrip()
        args: Any = {}
        if rest.startswith("{"):
            try:
                args, _ = json.JSONDecoder().raw_decode(rest)
            except ValueError:
                args = {}
        script.call = (m.group(1), args if isinstance(args, dict) else {})
    return script


def text_pieces(text: str) -> list[str]:
    """Split a reply into word-sized stream fragments that concatenate back to it exactly."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def json_pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def tokens(n_chars: int) -> int:
    return max(1, n_chars // 4)


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """Routes every request to the owning ScriptedServer; keep-alive HTTP/1.1 with TCP_NODELAY."""

    protocol_version = "HTTP/1.1"
    # Without it every keep-alive response stalls ~40 ms on Nagle + delayed ACK.
    disable_nagle_algorithm = True
    fake: ScriptedServer

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and benchmarks read their own output

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.fake.handle_get(self, url.path, parse_qs(url.query))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.fake.send_error_body(self, 400, "request body is not JSON")
            return
        if not isinstance(body, dict):
            self.fake.send_error_body(self, 400, "request body must be a JSON object")
            return
        self.fake._record(body)
        self.fake.handle_post(self, urlsplit(self.path).path, body, len(raw))

    # Headers and body go out in one write per chunk; TCP_NODELAY does the rest.
    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events: Iterable[str]) -> None:
        """Stream SSE frames with chunked transfer encoding, so the connection stays reusable."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for frame in events:
            data = frame.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


class ScriptedServer(ABC):
    """Threaded loopback HTTP server base: lifecycle, request log, model list; subclasses add routes."""

    def __init__(
        self,
        models: Iterable[str],
        latency_ms: float = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ):
        self.models = list(models)
        self.latency_ms = latency_ms
        self.host = host
        self.port = port
        # When set, requests must carry this key (tests check that clients send it).
        self.api_key = api_key
        self.model_list_reads = 0
        self._requests: list[dict[str, Any]] = []
        # Tests read the received bodies back; a long-running server (`main`, the bench) keeps none, or its
        # memory and garbage-collection time would grow with every request.
        self.keep_requests = True
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> ScriptedServer:
        handler = type("Handler", (ScriptedHandler,), {"fake": self})
        self._server = _DeepBacklogServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            # A short poll makes stop() (shutdown waits for one poll) quick enough for per-test servers.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        # Keep-alive connections would otherwise keep being served by their threads after the stop, and a
        # "provider down" test would still get answers through a pooled connection.
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # --- what tests inspect and steer -------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        """JSON bodies of every POST received so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def requests_with(self, key: str) -> list[dict[str, Any]]:
        """The received bodies that carry `key` (`messages` for chat, `input` for embeddings)."""
        return [body for body in self.requests if key in body]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self.model_list_reads = 0

    def add_model(self, model_id: str) -> None:
        with self._lock:
            if model_id not in self.models:
                self.models.append(model_id)

    def remove_model(self, model_id: str) -> None:
        with self._lock:
            if model_id in self.models:
                self.models.remove(model_id)

    # --- helpers for subclasses -------------------------------------------------------------------------
    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._conns.add if open_ else self._conns.discard)(conn)

    def _record(self, body: dict[str, Any]) -> int:
        with self._lock:
            if self.keep_requests:
                self._requests.append(body)
            return len(self._requests)

    def _model_ids(self) -> list[str]:
        with self._lock:
            self.model_list_reads += 1
            return list(self.models)

    def _wait(self, extra_ms: float = 0) -> None:
        delay_ms = self.latency_ms + extra_ms
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)

    @abstractmethod
    def handle_get(self, handler: ScriptedHandler, path: str, query: dict[str, list[str]]) -> None:
        """Answer a GET (each protocol defines its routes)."""

    @abstractmethod
    def handle_post(self, handler: ScriptedHandler, path: str, body: dict[str, Any], body_len: int) -> None:
        """Answer a POST."""

    @abstractmethod
    def send_error_body(self, handler: ScriptedHandler, status: int, message: str) -> None:
        """Answer an error in the protocol's own error shape."""


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def fake_embedding(text: str, dim: int) -> list[float]:
    """A unit vector that depends only on the text: equal texts embed equally, others look unrelated."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    vec = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = sum(x * x for x in vec) ** 0.5 or 1.0
    return [x / norm for x in vec]


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


class ScriptedOpenAI(ScriptedServer):
    """OpenAI-compatible fake: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/embeddings`."""

    def __init__(
        self,
        models: Iterable[str] = ("gpt-4o-mini", "text-embedding-3-small"),
        latency_ms: float = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ):
        super().__init__(models, latency_ms, host, port, api_key)
        self._chat_count = 0

    def send_error_body(self, handler: ScriptedHandler, status: int, message: str) -> None:
        error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        body = {"error": {"message": message, "type": error_type, "param": None, "code": error_type}}
        headers = {"Retry-After": "1"} if status == 429 else None
        handler.send_json(status, body, headers)

    def _authorized(self, handler: ScriptedHandler) -> bool:
        if self.api_key is None or handler.headers.get("Authorization") == f"Bearer {self.api_key}":
            return True
        self.send_error_body(handler, 401, "Incorrect API key provided.")
        return False

    def handle_get(self, handler: ScriptedHandler, path: str, query: dict[str, list[str]]) -> None:
        if path != "/v1/models":
            self.send_error_body(handler, 404, f"Unknown path {path}")
            return
        if not self._authorized(handler):
            return
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "recalld-tests"}
            for m in self._model_ids()
        ]
        handler.send_json(200, {"object": "list", "data": data})

    def handle_post(self, handler: ScriptedHandler, path: str, body: dict[str, Any], body_len: int) -> None:
        if not self._authorized(handler):
            return
        if path == "/v1/chat/completions":
            self._chat(handler, body, body_len)
        elif path == "/v1/embeddings":
            self._embeddings(handler, body)
        else:
            self.send_error_body(handler, 404, f"Unknown path {path}")

    # --- chat ------------------------------------------------------------------------------------------
    def _chat(self, handler: ScriptedHandler, body: dict[str, Any], body_len: int) -> None:
        with self._lock:
            self._chat_count += 1
            number = self._chat_count
        messages = body.get("messages") or []
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        script = parse_script(_message_text(last_user.get("content")))
        self._wait(script.slow_ms)
        fail = script.fail_status
        if fail is None and messages and messages[-1].get("role") == "tool":
            fail = script.fail_after_tool_status
        if fail is not None:
            self.send_error_body(handler, fail, f"scripted failure {fail}")
            return
        model = body.get("model", "")
        if model not in self.models:
            self.send_error_body(
                handler, 404, f"The model `{model}` does not exist or you do not have access to it."
            )
            return
        text, call = self._reply(messages, script, body.get("tools") or [])
        call_id = f"call_{number:06d}"
        completion_chars = len(text or "") + (len(call[0]) + len(json.dumps(call[1])) if call else 0)
        usage = {
            "prompt_tokens": tokens(body_len),
            "completion_tokens": tokens(completion_chars),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion_id = f"chatcmpl-{number:06d}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _chat_chunks(completion_id, model, text, call, call_id, usage if include_usage else None)
            handler.send_sse(f"data: {json.dumps(e)}\n\n" for e in events)
            return
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if call:
            arguments = json.dumps(call[1])
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": call[0], "arguments": arguments}}
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": "tool_calls" if call else "stop",
        }
        handler.send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [choice],
                "usage": usage,
                "system_fingerprint": None,
            },
        )

    @staticmethod
    def _reply(
        messages: list[dict[str, Any]], script: Script, tools: list[dict[str, Any]]
    ) -> tuple[str | None, tuple[str, dict[str, Any]] | None]:
        """(text, tool call) the model answers with."""
        if messages and messages[-1].get("role") == "tool":
            return f"done {_called_tool_name(messages, messages[-1].get('tool_call_id'))}", None
        offered = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
        if script.call and script.call[0] in offered:
            return None, script.call
        return f"ack {script.text}", None

    # --- embeddings ------------------------------------------------------------------------------------
    def _embeddings(self, handler: ScriptedHandler, body: dict[str, Any]) -> None:
        self._wait()
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]  # one string, or one pre-tokenized input
        if not isinstance(inputs, list) or not inputs:
            self.send_error_body(handler, 400, "'input' must be a non-empty string or array")
            return
        dim = int(body.get("dimensions") or 1536)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vec = fake_embedding(item if isinstance(item, str) else json.dumps(item), dim)
            embedding: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if as_base64 else vec
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        used = sum(tokens(len(str(i))) for i in inputs)
        handler.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": used, "total_tokens": used},
            },
        )


def _called_tool_name(messages: list[dict[str, Any]], tool_call_id: str | None) -> str:
    """Name of the tool whose call `tool_call_id` answers, from the assistant message that made it."""
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if call.get("id") == tool_call_id:
                return call.get("function", {}).get("name", "tool")
    return messages[-1].get("name") or "tool"


def _chat_chunks(
    completion_id: str,
    model: str,
    text: str | None,
    call: tuple[str, dict[str, Any]] | None,
    call_id: str,
    usage: dict[str, int] | None,
) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [choice],
        }

    yield chunk({"role": "assistant", "content": "" if text is not None else None})
    for piece in text_pieces(text or ""):
        yield chunk({"content": piece})
    if call:
        head = {"index": 0, "id": call_id, "type": "function", "function": {"name": call[0], "arguments": ""}}
        yield chunk({"tool_calls": [head]})
        for piece in json_pieces(json.dumps(call[1])):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls" if call else "stop")
    if usage is not None:
        yield {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [],
            "usage": usage,
        }


def serve_forever(server: ScriptedServer) -> None:
    """Start `server`, print its base URL and block until the process is killed."""
    server.keep_requests = False  # nobody reads them back from a standalone server
    server.start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def cli_args(argv: list[str] | None, default_models: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--models", default=default_models, help="comma-separated model ids")
    parser.add_argument("--api-key", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = cli_args(argv, "gpt-4o-mini,text-embedding-3-small")
    models = [m for m in args.models.split(",") if m]
    serve_forever(ScriptedOpenAI(models, args.latency_ms, args.host, args.port, args.api_key))


if __name__ == "__main__":
    main(sys.argv[1:])
