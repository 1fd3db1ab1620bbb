"""The FastAPI application: wiring of settings, storage, services and routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from recalld import __version__
from recalld.api import agents, blocks, errors, health, messages, models, runs, tools, unsupported
from recalld.api.deps import Services
from recalld.api.params import reject_repeated_scalars
from recalld.coord.lease import LocalLeases
from recalld.llm.catalog import ModelCatalog
from recalld.llm.providers import ChatClients
from recalld.services.agents import AgentService
from recalld.services.blocks import BlockService
from recalld.services.history import HistoryService
from recalld.services.models import ModelResolver
from recalld.services.orgs import OrgService
from recalld.services.runs import RunService
from recalld.services.tools import ToolService
from recalld.services.turns import TurnService
from recalld.settings import Settings
from recalld.store.migrate import upgrade_to_head
from recalld.store.router import StoreRouter

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over the configured size with 413 before reading them into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_413(send, self.max_bytes)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _send_413(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _send_413(send: Send, max_bytes: int) -> None:
    body = b'{"detail":"Request body too large: the limit is %d bytes"}' % max_bytes
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_services(settings: Settings) -> Services:
    router = StoreRouter(settings)
    http = httpx.AsyncClient(timeout=httpx.Timeout(settings.llm_timeout_s, connect=10.0))
    catalog = ModelCatalog(settings, http)
    resolver = ModelResolver(catalog)
    clients = ChatClients(settings, catalog, http)
    return Services(
        settings=settings,
        router=router,
        http=http,
        models=resolver,
        agents=AgentService(router, settings, resolver),
        blocks=BlockService(router, settings),
        tools=ToolService(router),
        orgs=OrgService(router),
        turns=TurnService(router, settings, resolver, clients, LocalLeases()),
        history=HistoryService(router),
        runs=RunService(router),
        key_cache={},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.readiness = "warming"
        services = build_services(settings)
        app.state.services = services
        await upgrade_to_head(services.router.primary)
        await services.orgs.bootstrap()
        await services.models.catalog.refresh()
        app.state.readiness = "ok"
        log.info("recalld %s ready on %s", __version__, services.router.dialect)
        try:
            yield
        finally:
            app.state.readiness = "draining"
            await services.http.aclose()
            await services.router.dispose()

    app = FastAPI(
        title="recalld",
        version=__version__,
        description="A Letta-compatible server for stateful LLM agents.",
        lifespan=lifespan,
        dependencies=[Depends(reject_repeated_scalars)],
    )
    errors.install(app)
    for module in (health, agents, blocks, tools, models, messages, runs, unsupported):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
