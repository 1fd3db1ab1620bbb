"""Secrets at rest across instances: the database's key check at start-up, and `recalld secrets rotate`."""

from __future__ import annotations

import logging

from sqlalchemy import exc as sa_exc

from recalld import ids
from recalld.secrets_box import SecretsBox, SecretsKeyError
from recalld.store import secrets as secrets_store
from recalld.store.router import StoreRouter

log = logging.getLogger(__name__)
ROTATE_BATCH = 200


async def verify_database_key(router: StoreRouter, box: SecretsBox) -> None:
    """Record the key check on a new database; refuse (SecretsKeyError) a key that cannot open the recorded one."""
    async with router.read(ids.DEFAULT_ORG_ID) as conn:
        token = await secrets_store.get_check(conn, ids.DEFAULT_ORG_ID)
    if token is None:
        try:
            async with router.write(ids.DEFAULT_ORG_ID) as conn:
                await secrets_store.insert_check(conn, ids.DEFAULT_ORG_ID, box.new_check())
            return
        except sa_exc.IntegrityError:  # another instance starting at the same moment recorded its key first
            async with router.read(ids.DEFAULT_ORG_ID) as conn:
                token = await secrets_store.get_check(conn, ids.DEFAULT_ORG_ID)
    if not box.opens_check(token):
        raise SecretsKeyError(
            "RECALLD_SECRETS_KEY cannot decrypt this database's secrets: it holds none of the keys they were "
            "encrypted with. Give this instance the same RECALLD_SECRETS_KEY as the others (to change keys, put "
            "the new key first and the old one after it, then run `recalld secrets rotate`). Without "
            "RECALLD_SECRETS_KEY on SQLite the key is RECALLD_DIR/secrets.key: restore the one made with the database."
        )
    if not box.check_is_current(token):
        log.warning(
            "this instance encrypts secrets with a key the database's other secrets are not under yet; once "
            "every instance has the new key, run `recalld secrets rotate`"
        )


async def _rotate_sandbox_vars(router: StoreRouter, box: SecretsBox) -> int:
    """Re-seal every sandbox environment variable with the first key (plain-text rows included)."""
    rewritten = 0
    after: tuple[str, str] | None = None
    while True:
        async with router.read(ids.DEFAULT_ORG_ID) as conn:
            batch = await secrets_store.sandbox_vars_page(conn, after, ROTATE_BATCH)
        if not batch:
            return rewritten
        for org_id, var_id in batch:
            async with router.write(org_id) as conn:
                stored = await secrets_store.sandbox_var_value_for_update(conn, org_id, var_id)
                if stored is None:
                    continue
                await secrets_store.set_sandbox_var_value(conn, org_id, var_id, box.reseal_value(stored))
                rewritten += 1
        after = batch[-1]


async def rotate_secrets(router: StoreRouter, box: SecretsBox) -> tuple[int, int]:
    """Re-encrypt every agent's secrets and every sandbox environment variable with the first key (plain-text
    rows of earlier versions included), then renew the key check; returns how many agents and variables were
    rewritten."""
    await verify_database_key(router, box)
    rewritten = 0
    after: tuple[str, str] | None = None
    while True:
        async with router.read(ids.DEFAULT_ORG_ID) as conn:
            batch = await secrets_store.agents_with_secrets(conn, after, ROTATE_BATCH)
        if not batch:
            break
        for org_id, agent_id, _ in batch:
            # Read again inside the write, so a concurrent update of the agent's secrets is not overwritten.
            async with router.write(org_id) as conn:
                stored = await secrets_store.agent_secrets_for_update(conn, org_id, agent_id)
                if stored is None:
                    continue
                await secrets_store.set_agent_secrets(conn, org_id, agent_id, box.reseal_mapping(stored))
                rewritten += 1
        after = (batch[-1][0], batch[-1][1])
    variables = await _rotate_sandbox_vars(router, box)
    async with router.write(ids.DEFAULT_ORG_ID) as conn:
        await secrets_store.replace_check(conn, ids.DEFAULT_ORG_ID, box.new_check())
    if router.dialect == "sqlite":
        # The rewritten rows' old pages (plain text of earlier versions) stay in the file's free pages until
        # the file is rebuilt. (PostgreSQL keeps dead row versions until VACUUM: docs say so.)
        async with router.primary.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.exec_driver_sql("VACUUM")
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return rewritten, variables
