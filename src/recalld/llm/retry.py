"""Retrying provider calls with backoff, and turning provider failures into API errors (contract R13)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp
import orjson

from recalld.errors import ProviderError, ProviderRateLimited, ProviderTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_BACKOFF_S = 8.0


class ProviderHTTPError(Exception):
    """A provider answered with an error status; `message` is the provider's own text."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def provider_message(content: bytes, reason: str | None = None) -> str:
    """The error text a provider put in its body (OpenAI and Anthropic both nest it under `error`)."""
    try:
        body = orjson.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")[:500] or reason or ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    if isinstance(error, str):
        return error[:500]
    return str(body)[:500]


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def http_error(response: aiohttp.ClientResponse) -> ProviderHTTPError:
    """The error an HTTP error answer stands for; reads its body and releases the response."""
    try:
        content = await response.read()
    finally:
        response.release()
    return ProviderHTTPError(response.status, provider_message(content, response.reason), retry_after(response.headers))


def as_api_error(provider: str, exc: Exception) -> ProviderError:
    """The error the API answers with once retries are spent; it never carries keys or tracebacks."""
    # aiohttp's timeouts (ServerTimeoutError and its kinds) are TimeoutErrors; check them before ClientError.
    if isinstance(exc, TimeoutError):
        return ProviderTimeout(f"{provider} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, ProviderHTTPError):
        detail = f"{provider} returned {exc.status}: {exc.message}"
        if exc.status == 429:
            return ProviderRateLimited(detail, retry_after_s=exc.retry_after_s)
        return ProviderError(detail)
    if isinstance(exc, aiohttp.ClientError):
        return ProviderError(f"{provider} could not be reached: {type(exc).__name__}")
    return ProviderError(f"{provider} failed: {exc}")


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ProviderHTTPError):
        return exc.status in RETRY_STATUSES
    if isinstance(exc, TimeoutError):
        return False  # the provider may still be working on it, and a retry doubles the wait (R13)
    return isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError))


async def with_retries(provider: str, call: Callable[[], Awaitable[T]], *, max_retries: int) -> T:
    """Run `call`, retrying 429/5xx/connection failures with jittered exponential backoff."""
    attempt = 0
    while True:
        try:
            return await call()
        except (ProviderHTTPError, aiohttp.ClientError, TimeoutError) as exc:
            if attempt >= max_retries or not _retryable(exc):
                raise as_api_error(provider, exc) from exc
            delay = min(MAX_BACKOFF_S, 0.25 * 2**attempt) * (0.5 + random.random())
            if isinstance(exc, ProviderHTTPError) and exc.retry_after_s is not None:
                delay = min(MAX_BACKOFF_S, max(delay, exc.retry_after_s))
            log.warning("%s call failed (%s); retry %d in %.2fs", provider, exc, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - an HTTP client bug under load is a provider failure, not a 500
            log.warning("%s call failed unexpectedly: %r", provider, exc)
            raise as_api_error(provider, exc) from exc
