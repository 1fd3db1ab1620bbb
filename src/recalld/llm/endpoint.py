"""A provider's JSON endpoint, shared by the chat clients: where to post, with which headers, how long to wait
and how often to retry."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from recalld.llm.http import ProviderHTTP, client_timeout
from recalld.llm.retry import as_api_error, http_error, with_retries


class ProviderEndpoint:
    def __init__(self, http: ProviderHTTP, *, provider_name: str, url: str, headers: dict[str, str],
                 timeout_s: float, max_retries: int):
        self.http = http
        self.provider_name = provider_name
        self.url = url
        self.headers = headers
        self.timeout = client_timeout(timeout_s)
        self.max_retries = max_retries

    async def _post(self, body: bytes) -> aiohttp.ClientResponse:
        response = await self.http.post(self.url, data=body, headers=self.headers, timeout=self.timeout)
        if response.status >= 400:
            raise await http_error(response)
        return response

    async def post_json(self, body: bytes) -> Any:
        """The provider's decoded answer; retried with backoff on 429, 5xx and connection errors."""

        async def call() -> Any:
            async with await self._post(body) as response:
                content = await response.read()
            try:
                return orjson.loads(content)
            except ValueError as e:  # a 200 that is not JSON (a proxy's HTML page) is the provider's failure too
                raise self.malformed(f"response: {content.decode('utf-8', 'replace')[:200]}") from e

        return await with_retries(self.provider_name, call, max_retries=self.max_retries)

    async def open_stream(self, body: bytes) -> aiohttp.ClientResponse:
        """A streaming answer with a 2xx status. Retried only before its first byte: once deltas went out, a
        retry would repeat them."""
        return await with_retries(self.provider_name, lambda: self._post(body), max_retries=self.max_retries)

    def malformed(self, what: str) -> Exception:
        return as_api_error(self.provider_name, ValueError(f"malformed {what}"))
