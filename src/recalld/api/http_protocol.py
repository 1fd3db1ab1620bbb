"""uvicorn's HTTP protocol with one change: a request it cannot parse (a request line over 64 KiB, say, or
malformed bytes) is answered with a JSON 400, like every other bad request (contract R16), instead of
uvicorn's plain text."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

UNPARSABLE = "Invalid HTTP request: it could not be parsed (for example, a request line longer than 64 KiB)."


class JSONErrorHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:  # noqa: ARG002 - uvicorn's own text is replaced
        body = orjson.dumps({"detail": UNPARSABLE})
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ])
        self.transport.write(b"".join(content))
        self.transport.close()
