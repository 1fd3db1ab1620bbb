"""Letta features recalld does not serve: an honest 501 naming the feature (contract 10)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from recalld.api.schemas.common import ErrorBody

router = APIRouter(tags=["not implemented"])

FEATURES = {
    "conversations": "conversations",
    "folders": "folders",
    "sources": "sources (folders)",
    "identities": "identities",
    "groups": "groups",
    "mcp-servers": "MCP servers",
    "templates": "templates",
    "schedules": "schedules",
    "client-side-access-tokens": "access tokens",
    "environments": "environments",
    "batches": "batches",
    "voice-beta": "voice",
    "chat": "the OpenAI-compatible chat-completions proxy",
    "messages": "cross-agent message listing and search",
    "telemetry": "telemetry",
}
_RESPONSES = {501: {"model": ErrorBody, "description": "Not implemented by recalld"}}


def _not_here(feature: str):
    async def handler(request: Request) -> JSONResponse:
        return JSONResponse({"detail": f"{feature} is not implemented by recalld"}, status_code=501)

    return handler


for _prefix, _feature in FEATURES.items():
    for _path in (f"/v1/{_prefix}/", f"/v1/{_prefix}/{{rest:path}}"):
        router.add_api_route(
            _path,
            _not_here(_feature),
            methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            responses=_RESPONSES,
            include_in_schema=False,
            name=f"unsupported_{_prefix}",
        )
