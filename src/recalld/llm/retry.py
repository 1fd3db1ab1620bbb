"""Retrying provider calls with backoff, and turning provider failures into API errors (contract R13)."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import TypeVar

import aiohttp
import orjson

from recalld.errors import ProviderError, ProviderRateLimited, ProviderRefused, ProviderTimeout
from recalld.llm.http import NonPublicAddress, ResponseTooLarge, read_body

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_BACKOFF_S = 8.0


# Of a configured provider's error body, at most this much is read and this much of its message reported.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_REASON_CHARS = 200
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class ProviderHTTPError(Exception):
    """A provider answered with an error status; `message` is a short sanitised reason ("" when none is told)."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(f"{status}: {message}" if message else str(status))
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def sanitized(text: str) -> str:
    """Text fit to go into an API error: control characters gone, whitespace collapsed, truncated."""
    text = " ".join(_CONTROL_CHARS.sub(" ", text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def provider_message(content: bytes) -> str:
    """The short reason a configured provider gave: the JSON `error.message` (OpenAI and Anthropic both nest it
    under `error`), sanitised; "" for any other body, which is never echoed."""
    try:
        body = orjson.loads(content)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message") or error.get("type")
        return sanitized(message) if isinstance(message, str) else ""
    if isinstance(error, str):
        return sanitized(error)
    return ""


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def http_error(response: aiohttp.ClientResponse, *, trusted: bool) -> ProviderHTTPError:
    """The error a non-2xx answer stands for; releases the response. Only a configured provider's (`trusted`)
    body is read, for its reason; an allowlisted endpoint's answer is reported by its status alone."""
    message = ""
    try:
        if trusted and response.status >= 400:
            message = provider_message(await read_body(response, MAX_ERROR_BODY_BYTES))
    except (aiohttp.ClientError, TimeoutError, ResponseTooLarge):
        pass  # the status alone is reported
    finally:
        response.release()
    if 300 <= response.status < 400:
        message = "redirects are not followed"
    return ProviderHTTPError(response.status, message, retry_after(response.headers))


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def as_api_error(provider: str, exc: Exception) -> ProviderError:
    """The error the API answers with once retries are spent; it never carries keys or tracebacks."""
    # aiohttp's timeouts (ServerTimeoutError and its kinds) are TimeoutErrors; check them before ClientError.
    if isinstance(exc, TimeoutError):
        return ProviderTimeout(f"{provider} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, ProviderHTTPError):
        detail = f"{provider} returned " + (f"{exc.status}: {exc.message}" if exc.message else _status_text(exc.status))
        if exc.status == 429:
            return ProviderRateLimited(detail, retry_after_s=exc.retry_after_s)
        return ProviderError(detail)
    if _refused_address(exc):
        return ProviderRefused(
            f"{provider} could not be reached: its host resolves to no public address, and only the operator's "
            "configured or allowlisted hosts may be on a private network"
        )
    if isinstance(exc, aiohttp.ClientError):
        return ProviderError(f"{provider} could not be reached: {type(exc).__name__}")
    return ProviderError(f"{provider} failed: {exc}")


def _refused_address(exc: Exception) -> bool:
    return isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, NonPublicAddress)


def _retryable(exc: Exception) -> bool:
    if _refused_address(exc):
        return False  # the guard answers the same way every time
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
