"""Request dependencies: the services container and who is calling."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from recalld import ids
from recalld.api.key_cache import KeyCache
from recalld.errors import InvalidInput, Unauthorized
from recalld.llm.http import ProviderHTTP
from recalld.secrets_box import SecretsBox
from recalld.services.agents import AgentService
from recalld.services.archives import ArchiveService
from recalld.services.blocks import BlockService
from recalld.services.caller import Caller
from recalld.services.history import HistoryService
from recalld.services.models import ModelResolver
from recalld.services.orgs import KEY_PREFIX, OrgService
from recalld.services.passages import PassageService
from recalld.services.runs import RunService
from recalld.services.tools import ToolService
from recalld.services.turns import TurnService
from recalld.settings import Settings
from recalld.store.router import StoreRouter

DEFAULT_CALLER = Caller(org_id=ids.DEFAULT_ORG_ID, user_id=ids.DEFAULT_USER_ID)


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
    key_cache: KeyCache
    secrets_box: SecretsBox
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
    required = services.settings.auth == "required"
    if authorization:
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            if required:
                raise Unauthorized("Unauthorized: expected 'Authorization: Bearer <api key>'")
            return DEFAULT_CALLER
        if not required and not key.startswith(KEY_PREFIX):
            # Letta clients send placeholders (`Bearer undefined`, a Letta Cloud key) to a server without a
            # password, and Letta serves them: not a recalld key, so the default organization.
            return DEFAULT_CALLER
        cached = services.key_cache.get(key)
        if cached is not None:
            return cached
        caller = await services.orgs.caller_for_key(key)
        services.key_cache.put(key, caller)
        return caller
    if required:
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


def metrics_token_dependency(settings: Settings) -> Callable[..., Awaitable[None]]:
    """/metrics' guard: with RECALLD_METRICS_TOKEN set, only `Authorization: Bearer <token>` is answered."""
    expected = settings.metrics_token.encode() if settings.metrics_token else None

    async def check(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
        if expected is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise Unauthorized("Unauthorized: /metrics needs 'Authorization: Bearer <RECALLD_METRICS_TOKEN>'")

    return check
