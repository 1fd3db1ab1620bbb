"""Organizations, users and API keys: the default single-user setup and `recalld keys create`."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from recalld import ids
from recalld.errors import NotFound, Unauthorized
from recalld.services.caller import Caller
from recalld.services.tools import ensure_builtin_tools
from recalld.store import orgs as orgs_store
from recalld.store.router import StoreRouter

KEY_PREFIX = "rk-"


@dataclass(frozen=True)
class NewKey:
    key: str
    key_id: str
    org_id: str
    user_id: str


def _org_of_key(key: str) -> str | None:
    """Keys read `rk-<org uuid>.<secret>`: the organization is visible so the router can pick its shard."""
    if not key.startswith(KEY_PREFIX) or "." not in key:
        return None
    org_part = key[len(KEY_PREFIX) :].split(".", 1)[0]
    org_id = f"org-{org_part}"
    return org_id if ids.is_valid("org", org_id) else None


class OrgService:
    def __init__(self, router: StoreRouter):
        self.router = router

    async def bootstrap(self) -> None:
        """Make sure the default organization and user exist and every organization has the built-in tools.

        Instances starting together race here; the loser of an insert simply runs again and finds the rows."""
        for attempt in range(5):
            try:
                return await self._bootstrap_once()
            except sa_exc.IntegrityError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _bootstrap_once(self) -> None:
        async with self.router.write(ids.DEFAULT_ORG_ID) as conn:
            if await orgs_store.get_org(conn, ids.DEFAULT_ORG_ID) is None:
                await orgs_store.insert_org(conn, ids.DEFAULT_ORG_ID, ids.DEFAULT_ORG_NAME)
            if await orgs_store.get_user(conn, ids.DEFAULT_ORG_ID, ids.DEFAULT_USER_ID) is None:
                await orgs_store.insert_user(conn, ids.DEFAULT_ORG_ID, ids.DEFAULT_USER_ID, ids.DEFAULT_USER_NAME)
            for org_id in await orgs_store.list_org_ids(conn):
                await ensure_builtin_tools(conn, org_id)

    async def create_key(self, org_name: str, user_name: str | None = None, key_name: str | None = None) -> NewKey:
        """Create a key (and its organization and user when new); the secret is returned once, stored hashed."""
        async with self.router.write(ids.DEFAULT_ORG_ID) as conn:
            org = await orgs_store.get_org_by_name(conn, org_name)
            if org is None:
                org_id = ids.new_id("org")
                await orgs_store.insert_org(conn, org_id, org_name)
                await ensure_builtin_tools(conn, org_id)
            else:
                org_id = org["organization_id"]
            user_name = user_name or ids.DEFAULT_USER_NAME
            user = await orgs_store.get_user_by_name(conn, org_id, user_name)
            user_id = user["id"] if user else ids.new_id("user")
            if user is None:
                await orgs_store.insert_user(conn, org_id, user_id, user_name)
            secret = f"{KEY_PREFIX}{org_id.removeprefix('org-')}.{secrets.token_urlsafe(32)}"
            key_id = ids.new_id("apikey")
            await orgs_store.insert_api_key(conn, org_id, key_id, user_id, secret, key_name)
        return NewKey(key=secret, key_id=key_id, org_id=org_id, user_id=user_id)

    async def revoke_key(self, org_name: str, key_id: str) -> None:
        async with self.router.write(ids.DEFAULT_ORG_ID) as conn:
            org = await orgs_store.get_org_by_name(conn, org_name)
            if org is None or not await orgs_store.revoke_api_key(conn, org["organization_id"], key_id):
                raise NotFound(f"No active key '{key_id}' in organization '{org_name}'")

    async def caller_for_key(self, key: str) -> Caller:
        org_id = _org_of_key(key)
        if org_id is None:
            raise Unauthorized("Unauthorized: invalid API key")
        async with self.router.read(org_id) as conn:
            row = await orgs_store.find_api_key(conn, org_id, key)
        if row is None:
            raise Unauthorized("Unauthorized: invalid API key")
        return Caller(org_id=org_id, user_id=row["user_id"])
