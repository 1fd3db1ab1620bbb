"""Request dependencies: the services container and who is calling."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from recalld import ids
from recalld.errors import InvalidInput, Unauthorized
from recalld.llm.http import ProviderHTTP
from recalld.services.agents import AgentService
from recalld.services.archives import ArchiveService
from recalld.services.blocks import BlockService
from recalld.services.caller import Caller
from recalld.services.history import HistoryService
from recalld.services.models import ModelResolver
from recalld.services.orgs import OrgService
from recalld.services.passages import PassageService
from recalld.services.runs import RunService
from recalld.services.tools import ToolService
from recalld.services.turns import TurnService
from recalld.settings import Settings
from recalld.store.router import StoreRouter

DEFAULT_CALLER = Caller(org_id=ids.DEFAULT_ORG_ID, user_id=ids.DEFAULT_USER_ID)
# A key found valid is trusted this long without another lookup (a revocation takes effect within it).
KEY_CACHE_TTL_S = 30.0
KEY_CACHE_MAX = 10_000


@dataclass
class Services:
    settings: Settings
    router: StoreRouter
    http: ProviderHTTP
    models: ModelResolver
    agents: AgentService
    blocks: BlockService
    tools: ToolService
    orgs: OrgService
    turns: TurnService
    history: HistoryService
    runs: RunService
    passages: PassageService
    archives: ArchiveService
    key_cache: dict[str, tuple[float, Caller]]
    limits: Any = None  # api/limits.py Limits: the organization limits (R22)


async def get_services(request: Request) -> Services:
    # async: a plain function dependency would be run in the threadpool on every request.
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_caller(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    user_id: Annotated[str | None, Header(convert_underscores=False, include_in_schema=False)] = None,
) -> Caller:
    """Resolve the organization before any handler runs (contract R18)."""
    if user_id is not None and not ids.is_valid("user", user_id):
        raise InvalidInput(f"INVALID_ARGUMENT: Invalid user ID format: {user_id[:80]}")
    if authorization:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("Unauthorized: expected 'Authorization: Bearer <api key>'")
        key = key.strip()
        cached = services.key_cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        caller = await services.orgs.caller_for_key(key)
        remember_key(services.key_cache, key, caller)
        return caller
    if services.settings.auth == "required":
        raise Unauthorized("Unauthorized: an API key is required (Authorization: Bearer <key>)")
    return DEFAULT_CALLER


async def get_admitted_caller(caller: Annotated[Caller, Depends(get_caller)], services: ServicesDep) -> Caller:
    """The caller, once its request is counted against its organization's request rate (R22; 429 over it)."""
    if services.limits is not None:
        await services.limits.admission.request(caller.org_id)
    return caller


CallerDep = Annotated[Caller, Depends(get_admitted_caller)]
# The send routes: their request is counted against the rate by the turn's admission, in the same Redis round
# trip as its turn slot (services/admission.py).
TurnCallerDep = Annotated[Caller, Depends(get_caller)]


def remember_key(cache: dict[str, tuple[float, Caller]], key: str, caller: Caller) -> None:
    """Cache a valid key for KEY_CACHE_TTL_S; at KEY_CACHE_MAX entries the expired go first, then the oldest,
    so the cache holds at most the keys of the last few seconds' callers, however many keys exist."""
    now = time.monotonic()
    if key not in cache and len(cache) >= KEY_CACHE_MAX:
        for stale in [k for k, (expires, _) in cache.items() if expires <= now]:
            del cache[stale]
        while len(cache) >= KEY_CACHE_MAX:
            del cache[next(iter(cache))]
    cache.pop(key, None)  # re-inserted last: insertion order is age order
    cache[key] = (now + KEY_CACHE_TTL_S, caller)
