"""recalld's error hierarchy; each error carries the HTTP status the API answers with.

RecalldError
 ├── InvalidInput        400  a request that is well-formed but makes no sense (bad handle, bad source)
 ├── Unauthorized        401  no valid API key where one is required
 ├── NotFound            404  unknown id, or an id of another organization
 ├── Conflict            409  a duplicate the contract forbids, a busy agent
 ├── LimitExceeded       429  over one of the organization's rate or concurrency limits; carries Retry-After
 ├── Unprocessable       422  a semantic check on a validated body failed (block over its limit)
 ├── NotImplementedHere  501  a Letta feature recalld does not serve (yet)
 ├── ProviderError       502  the LLM or embedding provider failed
 │    ├── ProviderRateLimited 429
 │    ├── ProviderTimeout     504
 │    └── ProviderRefused     400  the call was refused before it was sent: its endpoint may not be reached
 └── Unavailable         503  a dependency (database, pool) is unavailable; carries Retry-After
"""

from __future__ import annotations

import math


class RecalldError(Exception):
    status_code: int = 500
    headers: dict[str, str] | None = None

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidInput(RecalldError):
    status_code = 400


class Unauthorized(RecalldError):
    status_code = 401


class NotFound(RecalldError):
    status_code = 404


class Conflict(RecalldError):
    status_code = 409


class LimitExceeded(RecalldError):
    status_code = 429

    def __init__(self, detail: str, retry_after_s: float = 1.0):
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class Unprocessable(RecalldError):
    status_code = 422


class NotImplementedHere(RecalldError):
    status_code = 501


class ProviderError(RecalldError):
    status_code = 502


class ProviderRateLimited(ProviderError):
    status_code = 429

    def __init__(self, detail: str, retry_after_s: float | None = None):
        super().__init__(detail)
        if retry_after_s is not None:
            self.headers = {"Retry-After": str(math.ceil(retry_after_s))}


class ProviderTimeout(ProviderError):
    status_code = 504


class ProviderRefused(ProviderError):
    """A tenant-named endpoint the outbound guard would not connect to (it resolves to a non-public address):
    the request's own doing, and the same every time."""

    status_code = 400


class Unavailable(RecalldError):
    status_code = 503

    def __init__(self, detail: str, retry_after_s: int = 1):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}
