"""A custom tool's only way out (R23 + R20): an HTTP proxy the server runs on a unix socket that is bind-mounted
into the sandbox (whose network namespace has nothing but loopback); the sandbox's runner forwards
127.0.0.1:<port> to it, and the tool's HTTP_PROXY/HTTPS_PROXY name that port.

The proxy serves `CONNECT host:port` (HTTPS) and absolute-URI plain-HTTP requests, and only to targets the
operator's allowlist (RECALLD_ALLOWED_ENDPOINTS) names: host:port for CONNECT, the URL prefix for plain HTTP.
Providers' base URLs are not targets, and nothing is added to what the tool sends (never an operator key). The
target's addresses are resolved and checked here, and connected to as checked: public unicast only, unless that
exact host:port is an allowlist entry's. Each connection is bounded in bytes and time; anything refused is a
`403` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
from pathlib import Path

from yarl import URL

from recalld.llm.addresses import is_public_address
from recalld.llm.outbound import OutboundPolicy
from recalld.llm.urls import parse_endpoint

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
_HOP_HEADERS = {b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive"}


class Refused(Exception):
    """A request the proxy does not forward; the message is the 403's body."""


def _reply(status: str, reason: str) -> bytes:
    body = (reason + "\n").encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def _split_host_port(authority: str) -> tuple[str, int]:
    url = URL(f"//{authority}")
    if not url.raw_host or url.port is None or url.raw_user is not None or url.path not in ("", "/"):
        raise Refused(f"CONNECT needs host:port, not {authority[:200]!r}")
    return url.raw_host.lower().rstrip("."), url.port


class ToolProxy:
    def __init__(self, policy: OutboundPolicy, *, max_bytes: int, timeout_s: float, connections: int):
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._connections = asyncio.Semaphore(connections)
        self._server: asyncio.AbstractServer | None = None
        self._dir: Path | None = None
        self.socket_path: Path | None = None

    async def start(self) -> Path:
        # A short path (sun_path holds 108 bytes) in a directory of its own; the sandbox's uid must connect to it.
        self._dir = Path(tempfile.mkdtemp(prefix="recalld-toolnet-"))
        self._dir.chmod(0o711)
        self.socket_path = self._dir / "proxy.sock"
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        self.socket_path.chmod(0o666)
        return self.socket_path

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with self._connections, asyncio.timeout(self.timeout_s):
                await self._handle(reader, writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError):
            writer.write(_reply("400 Bad Request", "the request head is incomplete or too large"))
            return
        try:
            method, target, rest = self._parse(head)
            if method == b"CONNECT":
                host, port = _split_host_port(target)
                if not self.policy.allows_tool_tunnel(host, port):
                    raise Refused(f"{host}:{port} is not an allowed endpoint (RECALLD_ALLOWED_ENDPOINTS)")
                upstream = await self._open(host, port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                host, port, origin_form, authority = self._check_url(target)
                body_bytes = self._body_length(rest)
                upstream = await self._open(host, port)
                # One request per connection, its Host the URL's: a second request on a kept-alive connection,
                # or another Host, would reach what the allowlist check did not see.
                upstream[1].write(method + b" " + origin_form + b" " + self._with_host(rest, authority))
                await self._copy_exactly(reader, upstream[1], body_bytes)
                await self._pipe(None, writer, *upstream)
                return
        except Refused as e:
            log.info("tool network: refused: %s", e)
            writer.write(_reply("403 Forbidden", f"recalld tool proxy: {e}"))
            return
        await self._pipe(reader, writer, *upstream)

    @staticmethod
    def _body_length(rest: bytes) -> int:
        length = 0
        for line in rest.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding":
                raise Refused("a request body must have a Content-Length (no Transfer-Encoding) through this proxy")
            if name == b"content-length":
                if not value.strip().isdigit():
                    raise Refused("the Content-Length is not a number")
                length = int(value.strip())
        return length

    @staticmethod
    def _with_host(rest: bytes, authority: bytes) -> bytes:
        lines = [line for line in rest[:-4].split(b"\r\n") if line.split(b":", 1)[0].strip().lower() != b"host"]
        return b"\r\n".join([lines[0], b"Host: " + authority, *lines[1:]]) + b"\r\n\r\n"

    async def _copy_exactly(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int) -> None:
        if count > self.max_bytes:
            raise Refused(f"the request body is over the {self.max_bytes}-byte limit of a tool's connection")
        while count > 0:
            chunk = await reader.read(min(65536, count))
            if not chunk:
                break
            count -= len(chunk)
            writer.write(chunk)
            await writer.drain()

    def _parse(self, head: bytes) -> tuple[bytes, str, bytes]:
        """(method, target, the rest of the head rewritten: HTTP version and headers, hop-by-hop ones dropped)."""
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise Refused("not an HTTP/1.x request")
        method, target, version = parts
        kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS]
        rest = b"\r\n".join([version, *kept, b"Connection: close"]) + b"\r\n\r\n"
        try:
            return method, target.decode("ascii"), rest
        except UnicodeDecodeError:
            raise Refused("the request target is not ASCII") from None

    def _check_url(self, target: str) -> tuple[str, int, bytes, bytes]:
        if not target.lower().startswith("http://"):
            raise Refused("only absolute http:// URLs and CONNECT for https are served")
        try:
            url = URL(target)
            endpoint = parse_endpoint(str(url.with_query(None).with_fragment(None)))
        except ValueError as e:
            raise Refused(f"the URL {e}") from None
        if not self.policy.allows_tool_url(endpoint):
            raise Refused(f"{endpoint.url} is not under an allowed endpoint (RECALLD_ALLOWED_ENDPOINTS)")
        origin = url.raw_path_qs or "/"
        authority = (f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host) + f":{endpoint.port}"
        return endpoint.host, endpoint.port, origin.encode("ascii"), authority.encode("ascii")

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to an address of host that the guard allows (checked on the address connected to)."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise Refused(f"{host} does not resolve") from None
        named = (host, port) in self.policy.named_hosts
        addresses = [info[4][0] for info in infos if named or is_public_address(info[4][0])]
        if not addresses:
            raise Refused(f"{host} resolves to no public address")
        for address in dict.fromkeys(addresses):
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    return await asyncio.open_connection(address, port)
            except (OSError, TimeoutError):
                continue
        raise Refused(f"{host}:{port} cannot be reached")

    async def _pipe(
        self,
        client_reader: asyncio.StreamReader | None,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        budget = [self.max_bytes]

        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while budget[0] > 0:
                    chunk = await reader.read(min(65536, budget[0]))
                    if not chunk:
                        break
                    budget[0] -= len(chunk)
                    writer.write(chunk)
                    await writer.drain()
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()

        tasks = [asyncio.ensure_future(copy(upstream_reader, client_writer))]
        if client_reader is not None:  # a tunnel: both ways
            tasks.append(asyncio.ensure_future(copy(client_reader, upstream_writer)))
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            upstream_writer.close()

