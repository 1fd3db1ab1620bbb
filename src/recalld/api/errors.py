"""Mapping errors to HTTP answers in one place: JSON bodies, no stack traces, no secrets."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recalld.errors import RecalldError
from recalld.obs import tracing

log = logging.getLogger(__name__)


def describe_validation_errors(errors: list[dict]) -> str:
    """One line per wrong field: where it is and what is wrong (never the offending input itself)."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body" or len(err.get("loc", ())) == 1)
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)


def _no_retry(request: Request, status: int) -> dict[str, str]:
    # The SDK retries POSTs on 409/5xx; a 4xx caused by the input itself would fail the same way again.
    return {"x-should-retry": "false"} if status in (400, 404, 413, 422) else {}


def _unprocessable(detail: str, headers: dict[str, str]) -> JSONResponse:
    # Letta's 422 body carries the trace id: with tracing on, the request's own (a log search key).
    return JSONResponse({"trace_id": tracing.current_trace_id(), "detail": detail}, status_code=422, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RecalldError)
    async def _recalld_error(request: Request, exc: RecalldError) -> JSONResponse:
        headers = {**(exc.headers or {}), **_no_retry(request, exc.status_code)}
        if exc.status_code == 422:
            return _unprocessable(exc.detail, headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = describe_validation_errors(list(exc.errors()))
        return _unprocessable(detail, _no_retry(request, 422))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # A body that is not even text (invalid UTF-8) is malformed input like any other: 422 (R5).
            return _unprocessable("Invalid request: body: not valid JSON", _no_retry(request, 422))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "An unknown error occurred"}, status_code=500)
