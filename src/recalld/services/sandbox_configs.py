"""Use cases of Letta's sandbox configurations: one `local` configuration per organization (what recalld's
bubblewrap sandbox is, to Letta's API) and its environment variables, which every custom tool of the
organization sees (the agent's own secrets override them). Values are secrets: sealed at rest with the instance's
SecretsBox (rows written in plain text by earlier versions still read), opened for the organization's API view and
for the tool's environment, and masked in logs."""

from __future__ import annotations

import re

from sqlalchemy import exc as sa_exc

from recalld import ids
from recalld.errors import Conflict, InvalidInput, NotFound
from recalld.secrets_box import SecretsBox
from recalld.services.caller import Caller
from recalld.store import sandbox_configs as store
from recalld.store.router import StoreRouter
from recalld.store.types import utcnow

LOCAL = "local"
SANDBOX_TYPES = ("e2b", "modal", "local")
_LOCAL_DEFAULTS = {"sandbox_dir": None, "use_venv": False, "venv_name": "venv", "pip_requirements": []}
# Keys only E2B's or Modal's configuration has: how Letta's API tells those apart from a local one.
_E2B_KEYS = {"template", "timeout"}
_MODAL_KEYS = {"language", "npm_requirements"}
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_VARS_PER_CONFIG = 200


def local_config(config: dict, current: dict | None = None) -> dict:
    """A LocalSandboxConfig as recalld can honour it; anything it could not is a 400 naming the field."""
    if _MODAL_KEYS & config.keys():
        raise InvalidInput("sandbox type 'modal' is not supported by recalld; only 'local' sandboxes (bubblewrap)")
    if _E2B_KEYS & config.keys():
        raise InvalidInput("sandbox type 'e2b' is not supported by recalld; only 'local' sandboxes (bubblewrap)")
    unknown = sorted(config.keys() - _LOCAL_DEFAULTS.keys())
    if unknown:
        raise InvalidInput(f"config: unknown field(s) {unknown} for a local sandbox")
    merged = {**_LOCAL_DEFAULTS, **(current or {}), **config}
    if merged["sandbox_dir"] is not None:
        raise InvalidInput(
            "config.sandbox_dir: tools run in an isolated sandbox with an empty /tmp; a host directory is not used"
        )
    if merged["use_venv"] is not False:
        raise InvalidInput("config.use_venv: recalld does not build virtualenvs for tools (see the README)")
    if merged["pip_requirements"]:
        raise InvalidInput("config.pip_requirements: recalld does not install packages for tools (see the README)")
    if not isinstance(merged["venv_name"], str) or not merged["venv_name"]:
        raise InvalidInput("config.venv_name must be a non-empty string")
    return merged


def _check_key(key: str) -> None:
    if not _ENV_KEY.fullmatch(key):
        raise InvalidInput("key must be an environment variable name: letters, digits and '_', not a digit first")


def _view(row: dict) -> dict:
    return {
        "id": row["id"],
        "type": row["type"],
        "organization_id": row["organization_id"],
        "config": row["config"],
        "created_by_id": row.get("created_by_id"),
        "last_updated_by_id": row.get("last_updated_by_id"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _var_view(row: dict, value: str) -> dict:
    view = {k: row.get(k) for k in (
        "id", "key", "description", "organization_id", "sandbox_config_id",
        "created_by_id", "last_updated_by_id", "created_at", "updated_at",
    )}  # fmt: skip
    return {**view, "value": value}


class SandboxConfigService:
    def __init__(self, router: StoreRouter, box: SecretsBox):
        self.router = router
        self.box = box

    async def create_or_update(self, caller: Caller, config: dict) -> dict:
        """Letta's create: the organization's configuration of that type is created, or updated when it has one."""
        wanted = local_config(config)
        now = utcnow()
        for _ in range(2):  # a concurrent create of the same type may win the insert: then it is an update
            try:
                async with self.router.write(caller.org_id) as conn:
                    current = await store.get_by_type(conn, caller.org_id, LOCAL)
                    if current is not None:
                        values = {"config": wanted, "updated_at": now, "last_updated_by_id": caller.user_id}
                        await store.update(conn, caller.org_id, current["id"], values)
                        return _view({**current, **values})
                    row = {
                        "organization_id": caller.org_id,
                        "id": ids.new_id("sandbox"),
                        "type": LOCAL,
                        "config": wanted,
                        "created_by_id": caller.user_id,
                        "last_updated_by_id": caller.user_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                    await store.insert(conn, row)
                    return _view(row)
            except sa_exc.IntegrityError:
                continue
        raise Conflict("the sandbox configuration is being changed concurrently; retry")

    async def default_local(self, caller: Caller) -> dict:
        async with self.router.read(caller.org_id) as conn:
            current = await store.get_by_type(conn, caller.org_id, LOCAL)
        return _view(current) if current is not None else await self.create_or_update(caller, {})

    async def list(self, caller: Caller, *, sandbox_type: str | None, after: str | None, limit: int) -> list[dict]:
        if sandbox_type is not None and sandbox_type not in SANDBOX_TYPES:
            raise InvalidInput(f"sandbox_type must be one of {list(SANDBOX_TYPES)}")
        async with self.router.read(caller.org_id) as conn:
            rows = await store.list_page(conn, caller.org_id, sandbox_type=sandbox_type, after=after, limit=limit)
        return [_view(r) for r in rows]

    async def update(self, caller: Caller, config_id: str, config: dict | None) -> dict:
        async with self.router.write(caller.org_id) as conn:
            current = await store.get(conn, caller.org_id, config_id)
            if current is None:
                raise NotFound(f"Sandbox config with id '{config_id}' not found")
            values = {"updated_at": utcnow(), "last_updated_by_id": caller.user_id}
            if config is not None:
                values["config"] = local_config(config, current["config"])
            await store.update(conn, caller.org_id, config_id, values)
            return _view({**current, **values})

    async def delete(self, caller: Caller, config_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await store.delete(conn, caller.org_id, config_id):
                raise NotFound(f"Sandbox config with id '{config_id}' not found")

    # --- environment variables ------------------------------------------------------------------------

    async def create_var(self, caller: Caller, config_id: str, body: dict) -> dict:
        _check_key(body["key"])
        now = utcnow()
        try:
            async with self.router.write(caller.org_id) as conn:
                if await store.get(conn, caller.org_id, config_id) is None:
                    raise NotFound(f"Sandbox config with id '{config_id}' not found")
                if await store.get_var_by_key(conn, caller.org_id, config_id, body["key"]) is not None:
                    raise Conflict(f"The sandbox config already has an environment variable '{body['key']}'")
                existing = await store.vars_page(conn, caller.org_id, config_id, after=None, limit=MAX_VARS_PER_CONFIG)
                if len(existing) >= MAX_VARS_PER_CONFIG:
                    raise InvalidInput(f"a sandbox config holds at most {MAX_VARS_PER_CONFIG} environment variables")
                row = {
                    "organization_id": caller.org_id,
                    "id": ids.new_id("sandbox-env"),
                    "sandbox_config_id": config_id,
                    "key": body["key"],
                    "value": self.box.seal_value(body["value"]),
                    "description": body.get("description"),
                    "created_by_id": caller.user_id,
                    "last_updated_by_id": caller.user_id,
                    "created_at": now,
                    "updated_at": now,
                }
                await store.insert_var(conn, row)
        except sa_exc.IntegrityError as e:  # a concurrent create took the key first
            raise Conflict(f"The sandbox config already has an environment variable '{body['key']}'") from e
        return _var_view(row, body["value"])

    async def list_vars(self, caller: Caller, config_id: str, *, after: str | None, limit: int) -> list[dict]:
        async with self.router.read(caller.org_id) as conn:
            if await store.get(conn, caller.org_id, config_id) is None:
                raise NotFound(f"Sandbox config with id '{config_id}' not found")
            rows = await store.vars_page(conn, caller.org_id, config_id, after=after, limit=limit)
        return [_var_view(r, self.box.open_value(r["value"])) for r in rows]

    async def update_var(self, caller: Caller, var_id: str, changes: dict) -> dict:
        values = {k: v for k, v in changes.items() if v is not None or k == "description"}
        if "key" in values:
            _check_key(values["key"])
        plain_value = values.get("value")
        if plain_value is not None:
            values["value"] = self.box.seal_value(plain_value)
        try:
            async with self.router.write(caller.org_id) as conn:
                current = await store.get_var(conn, caller.org_id, var_id)
                if current is None:
                    raise NotFound(f"Sandbox environment variable with id '{var_id}' not found")
                if values.get("key", current["key"]) != current["key"] and await store.get_var_by_key(
                    conn, caller.org_id, current["sandbox_config_id"], values["key"]
                ):
                    raise Conflict(f"The sandbox config already has an environment variable '{values['key']}'")
                values.update(updated_at=utcnow(), last_updated_by_id=caller.user_id)
                await store.update_var(conn, caller.org_id, var_id, values)
        except sa_exc.IntegrityError as e:
            raise Conflict(f"The sandbox config already has an environment variable '{values.get('key')}'") from e
        shown = plain_value if plain_value is not None else self.box.open_value(current["value"])
        return _var_view({**current, **values}, shown)

    async def delete_var(self, caller: Caller, var_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            if not await store.delete_var(conn, caller.org_id, var_id):
                raise NotFound(f"Sandbox environment variable with id '{var_id}' not found")

    async def tool_environment(self, org_id: str) -> dict[str, str]:
        """What every custom tool of the organization starts its environment from."""
        async with self.router.read(org_id) as conn:
            stored = await store.environment(conn, org_id, LOCAL)
        return {key: self.box.open_value(value) for key, value in stored.items()}
