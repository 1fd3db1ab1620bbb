"""Response shapes shared by many routes: errors, health, delete acknowledgements."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error the API answers: `detail` says what is wrong."""

    detail: Any


class ValidationErrorBody(BaseModel):
    """422: the request did not validate; `detail` is a string naming the fields that are wrong."""

    trace_id: str = ""
    detail: str


class Health(BaseModel):
    version: str
    status: str
    recalld_version: str | None = None


class DeletedMessage(BaseModel):
    message: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the errors a route can answer (422 always)."""
    descriptions = {
        400: "Invalid argument",
        401: "Missing or invalid API key",
        404: "Not found",
        409: "Conflict",
        413: "Request body too large",
        429: "Rate limited: by the model provider, or over one of the organization's limits (Retry-After)",
        501: "Not implemented by recalld",
        502: "Model provider failed",
        503: "A dependency is unavailable; retry after Retry-After seconds",
        504: "Model provider timed out",
    }
    out: dict[int | str, dict[str, Any]] = {
        422: {"model": ValidationErrorBody, "description": "Validation error"},
        503: {"model": ErrorBody, "description": descriptions[503]},
        413: {"model": ErrorBody, "description": descriptions[413]},
        401: {"model": ErrorBody, "description": descriptions[401]},
        500: {"model": ErrorBody, "description": "Internal error (a bug)"},
    }
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": descriptions[status]}
    return out
