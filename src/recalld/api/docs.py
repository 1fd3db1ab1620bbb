"""The OpenAPI document and its two viewers, behind a key when auth is required (R21).

With RECALLD_AUTH=required they need a valid key unless RECALLD_PUBLIC_DOCS=true: the document lists every route
an attacker could try. A browser sends no key by itself, so an operator who wants /docs in a browser under
`required` opens them with RECALLD_PUBLIC_DOCS=true (or a proxy that adds the header).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from recalld.api.deps import get_caller
from recalld.settings import Settings

OPENAPI_URL = "/openapi.json"


def install(app: FastAPI, settings: Settings) -> None:
    guarded = settings.auth == "required" and not settings.public_docs
    dependencies = [Depends(get_caller)] if guarded else []

    @app.get(OPENAPI_URL, include_in_schema=False, dependencies=dependencies)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{app.title} - Swagger UI")

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{app.title} - ReDoc")
