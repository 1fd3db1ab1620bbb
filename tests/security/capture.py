"""A capture server on loopback standing in for an attacker's endpoint (or an internal service): it records
every request it gets -- method, path, headers, body -- and answers by path prefix:

- `/ok/...`: a working model server (OpenAI chat completions, streamed or not; Anthropic messages, streamed or
  not; OpenAI embeddings), so an allowlisted agent's turn succeeds;
- `/err/...`: 400 with an "internal" page in a JSON error, `/html/...`: 200 with the page as HTML,
  `/sse-err/...`: a 200 stream whose first chunk is an error quoting the page;
- `/redirect/...`: 307 to `redirect_to` + the rest of the path.

It listens on every address it is given with one port (127.0.0.1, 127.0.0.2, ::1), so a request to any of them
would be seen.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Any

INTERNAL_PAGE = "INTERNAL-ONLY PAGE: db_password=hunter2-capture"


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    capture: CaptureServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length))

    def _handle(self, raw: bytes) -> None:
        self.capture.record(self.server.server_address[0], self.command, self.path, dict(self.headers.items()), raw)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        path = self.path
        if path.startswith("/redirect"):
            self.send_response(307)
            self.send_header("Location", self.capture.redirect_to + path.removeprefix("/redirect"))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/err"):
            self._json(400, {"error": {"message": INTERNAL_PAGE, "type": "invalid_request_error"}})
        elif path.startswith("/html"):
            self._bytes(200, "text/html", f"<html><body>{INTERNAL_PAGE}</body></html>".encode())
        elif path.startswith("/sse-err"):
            self._sse([{"error": {"message": INTERNAL_PAGE}}])
        elif path.endswith("/embeddings"):
            dim = int(body.get("dimensions") or 1536)
            inputs = body.get("input") or []
            inputs = [inputs] if isinstance(inputs, str) else inputs
            vector = [1.0] + [0.0] * (dim - 1)
            data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(inputs))]
            self._json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": {}})
        elif path.endswith("/messages"):
            self._anthropic(body)
        elif path.endswith("/chat/completions"):
            self._openai(body)
        else:
            self._json(404, {"error": {"message": "no such path"}})

    def _openai(self, body: dict) -> None:
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if body.get("stream"):
            self._sse([
                {"id": "c1", "object": "chat.completion.chunk", "model": body.get("model"),
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "captured reply"}}]},
                {"id": "c1", "object": "chat.completion.chunk", "model": body.get("model"),
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage},
            ], done=True)
            return
        self._json(200, {
            "id": "c1", "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "captured reply"},
                         "finish_reason": "stop"}],
            "usage": usage,
        })

    def _anthropic(self, body: dict) -> None:
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                   "content": [{"type": "text", "text": "captured reply"}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": 3, "output_tokens": 2}}
        if not body.get("stream"):
            self._json(200, message)
            return
        self._sse([
            {"type": "message_start", "message": {**message, "content": [], "stop_reason": None}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "captured reply"}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
            {"type": "message_stop"},
        ])

    def _json(self, status: int, payload: Any) -> None:
        self._bytes(status, "application/json", json.dumps(payload).encode())

    def _bytes(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[dict], done: bool = False) -> None:
        frames = [f"data: {json.dumps(e)}\n\n" for e in events] + (["data: [DONE]\n\n"] if done else [])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for frame in frames:
            data = frame.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


class CaptureServer:
    """Listens on `hosts` (loopback addresses only) with one port; `requests` lists what arrived."""

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1",), redirect_to: str = ""):
        self.hosts = hosts
        self.redirect_to = redirect_to
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._servers: list[http.server.ThreadingHTTPServer] = []
        self.port = 0

    def record(self, bound: str, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self._requests.append({"bound": bound, "method": method, "path": path, "headers": headers, "body": body})

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def __enter__(self) -> CaptureServer:
        handler = type("CaptureHandler", (_Handler,), {"capture": self})
        for host in self.hosts:
            server_class = _V6Server if ":" in host else http.server.ThreadingHTTPServer
            server = server_class((host, self.port), handler)
            server.daemon_threads = True
            self.port = server.server_address[1]
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
