"""A provider's JSON endpoint, shared by the chat clients: where to post, with which headers, how long to wait
and how often to retry."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from recalld.llm.http import DEFAULT_MAX_RESPONSE_BYTES, ProviderHTTP, client_timeout, read_body
from recalld.llm.retry import as_api_error, http_error, sanitized, with_retries

# Whole-call bounds when a client is built without settings (the server passes its own, settings.py).
DEFAULT_TOTAL_TIMEOUT_S = 300.0
DEFAULT_STREAM_TIMEOUT_S = 1800.0


class ProviderEndpoint:
    """`trusted` is True for a configured provider's own base URL: only its error messages are reported (short and
    sanitised); an allowlisted endpoint's answers are reported by status alone."""

    def __init__(self, http: ProviderHTTP, *, provider_name: str, url: str, headers: dict[str, str],
                 timeout_s: float, max_retries: int, trusted: bool = True,
                 total_timeout_s: float = DEFAULT_TOTAL_TIMEOUT_S,
                 stream_timeout_s: float = DEFAULT_STREAM_TIMEOUT_S,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self.http = http
        self.provider_name = provider_name
        self.url = url
        self.headers = headers
        self.timeout = client_timeout(timeout_s, total_timeout_s)
        self.stream_timeout = client_timeout(timeout_s, stream_timeout_s)
        self.max_retries = max_retries
        self.trusted = trusted
        self.max_response_bytes = max_response_bytes

    async def _post(self, body: bytes, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        response = await self.http.post(self.url, data=body, headers=self.headers, timeout=timeout)
        if response.status >= 300:  # a 3xx too: redirects are not followed
            raise await http_error(response, trusted=self.trusted)
        return response

    async def post_json(self, body: bytes) -> Any:
        """The provider's decoded answer; retried with backoff on 429, 5xx and connection errors."""

        async def call() -> Any:
            async with await self._post(body, self.timeout) as response:
                content = await read_body(response, self.max_response_bytes)
            try:
                return orjson.loads(content)
            except ValueError as e:  # a 200 that is not JSON (a proxy's HTML page) is the provider's failure too
                raise self.malformed("response: not JSON") from e

        return await with_retries(self.provider_name, call, max_retries=self.max_retries)

    async def open_stream(self, body: bytes) -> aiohttp.ClientResponse:
        """A streaming answer with a 2xx status. Retried only before its first byte: once deltas went out, a
        retry would repeat them."""
        return await with_retries(
            self.provider_name, lambda: self._post(body, self.stream_timeout), max_retries=self.max_retries
        )

    def reason(self, message: object) -> str:
        """What of an error message found in an answer may be reported: a configured provider's, sanitised."""
        return sanitized(str(message)) if self.trusted and isinstance(message, str) else ""

    def malformed(self, what: str) -> Exception:
        return as_api_error(self.provider_name, ValueError(f"malformed {what}"))
