"""The one outbound HTTP session every model-provider call goes through (chat, embeddings, model lists).

It is aiohttp because the client's own CPU is a large share of a turn's: against the scripted LLM on a
2-core VM, a request cost 1,436 µs of CPU with httpx, 621 µs with httpx on its aiohttp transport and
208 µs with plain aiohttp.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

# httpx's max_connections before; aiohttp has no separate cap on idle ones (httpx kept at most 256).
MAX_CONNECTIONS = 512
# Idle connections are dropped after this long (httpx's default): servers such as uvicorn (vLLM) close them
# after 5 s, and reusing one they just closed fails the call.
KEEPALIVE_S = 5.0


def client_timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    """No overall deadline, but each wait (for a connection, for the next bytes) is bounded by timeout_s,
    so a stalled stream fails between chunks while a long one that keeps sending is never cut."""
    return aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=min(10.0, timeout_s), sock_read=timeout_s)


class ProviderHTTP:
    """Owns the shared aiohttp session, opened on first use (a session belongs to the running loop)."""

    def __init__(self, trace_configs: Sequence[aiohttp.TraceConfig] = ()):
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY/ALL_PROXY/NO_PROXY are read once, as httpx does. aiohttp's trust_env=True would
        # re-read them (and ~/.netrc) in a worker thread on every request: ~600 µs of CPU per call.
        self._proxies = urllib.request.getproxies_environment()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S)
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
        """Send a request and return the response once its headers are in; the caller releases it."""
        response = await self.session.request(method, url, proxy=self.proxy(url), **kwargs)
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


async def iter_lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The lines of a response body (`\\n` or `\\r\\n` ended), however long: aiohttp's readline fails on a line
    over twice its read buffer (128 KiB or 512 KiB, by version), and a streamed tool call can be longer."""
    pending = bytearray()
    async for chunk in response.content.iter_any():
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            line = pending[start:end]
            yield (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")
            start = end + 1
        del pending[:start]
    if pending:
        yield pending.decode("utf-8", "replace")
