"""The one outbound HTTP session every call made on a tenant's behalf goes through (chat, embeddings, model
lists; later callbacks, MCP and fetch_webpage), and the guard it connects through (contract R20).

The guard checks the addresses a host resolves to when a connection is opened -- the addresses then connected to,
so DNS rebinding can't slip a private address in after a check -- and IP-literal hosts alike: only public unicast
addresses (llm/addresses.py), unless the exact host:port is a configured provider's, an allowlist entry's or a
proxy's. Redirects are never followed, and each call's total time is bounded.

It is aiohttp because the client's own CPU is a large share of a turn's: against the scripted LLM on a
2-core VM, a request cost 1,436 µs of CPU with httpx, 621 µs with httpx on its aiohttp transport and
208 µs with plain aiohttp.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from recalld.llm.addresses import is_public_address

log = logging.getLogger(__name__)

# httpx's max_connections before; aiohttp has no separate cap on idle ones (httpx kept at most 256).
MAX_CONNECTIONS = 512
# Idle connections are dropped after this long (httpx's default): servers such as uvicorn (vLLM) close them
# after 5 s, and reusing one they just closed fails the call.
KEEPALIVE_S = 5.0


# An answer larger than this fails the call (settings.outbound_max_response_bytes overrides it per client).
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


def client_timeout(timeout_s: float, total_s: float | None = None) -> aiohttp.ClientTimeout:
    """Each wait (for a connection, for the next bytes) is bounded by timeout_s, so a stalled stream fails between
    chunks; total_s bounds the whole call, reading the answer included (generous for a stream)."""
    return aiohttp.ClientTimeout(
        total=total_s, connect=timeout_s, sock_connect=min(10.0, timeout_s), sock_read=timeout_s
    )


class NonPublicAddress(OSError):
    """A connection refused by the guard: the host resolves only to addresses a tenant's call may not reach."""


class ResponseTooLarge(ValueError):
    """An answer over the size a client reads."""


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that connects tenant-named hosts to public addresses only.

    aiohttp connects to exactly the addresses `_resolve_host` returns (IP-literal hosts included, which never
    reach a resolver; legacy numeric forms such as 2130706433 it refuses itself), and calls it for each new
    connection -- so the check costs nothing on a reused keep-alive connection."""

    def __init__(self, *, trusted_hosts: frozenset[tuple[str, int]], **kwargs: Any):
        super().__init__(**kwargs)
        self._trusted_hosts = trusted_hosts

    async def _resolve_host(self, host: str, port: int, traces: Sequence[Any] | None = None) -> list[Any]:
        results = await super()._resolve_host(host, port, traces=traces)
        if (host.rstrip("."), port) in self._trusted_hosts:
            return results
        public = [r for r in results if is_public_address(r["host"])]
        if not public:
            # The addresses stay out of the message: they would tell a tenant the layout of an internal network.
            raise NonPublicAddress(f"{host} resolves to no public address")
        return public


def proxy_hosts(proxies: dict[str, str]) -> set[tuple[str, int]]:
    """The (host, port) of each proxy URL: the operator's, so the guard lets connections to them through."""
    hosts = set()
    for scheme, value in proxies.items():
        if scheme == "no":  # NO_PROXY: the hosts that bypass them
            continue
        try:
            url = URL(value if "://" in value else f"http://{value}")
        except ValueError:
            continue
        if url.raw_host and url.port:
            hosts.add((url.raw_host.rstrip("."), url.port))
    return hosts


class ProviderHTTP:
    """Owns the shared aiohttp session, opened on first use (a session belongs to the running loop).

    With `trusted_hosts` (the server always passes them) every connection goes through the GuardedConnector;
    without, connections are unchecked -- for tests of the protocol clients alone."""

    def __init__(self, trace_configs: Sequence[aiohttp.TraceConfig] = (),
                 trusted_hosts: Iterable[tuple[str, int]] | None = None):
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY/ALL_PROXY/NO_PROXY are read once, as httpx does. aiohttp's trust_env=True would
        # re-read them (and ~/.netrc) in a worker thread on every request: ~600 µs of CPU per call.
        self._proxies = urllib.request.getproxies_environment()
        self.trusted_hosts = (
            None if trusted_hosts is None else frozenset(trusted_hosts) | proxy_hosts(self._proxies)
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self.trusted_hosts is None:
                connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S)
            else:
                connector = GuardedConnector(
                    trusted_hosts=self.trusted_hosts, limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S
                )
            self._session = aiohttp.ClientSession(connector=connector, trace_configs=self._trace_configs or None)
        return self._session

    def proxy(self, url: str) -> str | None:
        """The proxy the environment names for this URL, if any."""
        if not self._proxies:
            return None
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
        if proxy is None or urllib.request.proxy_bypass_environment(parts.netloc, self._proxies):
            return None
        return proxy

    async def request(self, method: str, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """Send a request and return the response once its headers are in; the caller releases it. A redirect is
        returned as it is, never followed (its target could be anywhere)."""
        response = await self.session.request(method, url, proxy=self.proxy(url), allow_redirects=False, **kwargs)
        # One line per provider request, as httpx logged them.
        if log.isEnabledFor(logging.INFO):
            log.info(
                'HTTP Request: %s %s "HTTP/%d.%d %d %s"',
                method,
                url,
                response.version.major,
                response.version.minor,
                response.status,
                response.reason,
            )
        return response

    async def post(self, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", url, **kwargs)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def read_body(response: aiohttp.ClientResponse, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> bytes:
    """The whole answer, or ResponseTooLarge once it passes max_bytes (never more than that is held)."""
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise ResponseTooLarge(f"answer of {declared} bytes is over the {max_bytes}-byte limit")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > max_bytes:
            raise ResponseTooLarge(f"answer is over the {max_bytes}-byte limit")
    return bytes(body)


async def iter_lines(
    response: aiohttp.ClientResponse, max_line_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
) -> AsyncIterator[str]:
    """The lines of a response body (`\\n` or `\\r\\n` ended), however long up to max_line_bytes: aiohttp's
    readline fails on a line over twice its read buffer (128 KiB or 512 KiB, by version), and a streamed tool call
    can be longer."""
    pending = bytearray()
    async for chunk in response.content.iter_any():
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            line = pending[start:end]
            yield (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")
            start = end + 1
        del pending[:start]
        if len(pending) > max_line_bytes:
            raise ResponseTooLarge(f"a streamed line is over the {max_line_bytes}-byte limit")
    if pending:
        yield pending.decode("utf-8", "replace")
