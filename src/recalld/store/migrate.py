"""Applying the schema: one Alembic history for SQLite and PostgreSQL, run exactly once however many
instances start together (a PostgreSQL advisory lock queues the others until it is done)."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same in every instance.
_MIGRATION_LOCK_KEY = 0x7265_6361_6C6C64  # "recalld"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(sync_connection) -> None:  # noqa: ANN001
    current = MigrationContext.configure(sync_connection).get_current_revision()
    head = head_revision()
    if current == head:
        return
    log.info("migrating database from %s to %s", current, head)
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_connection
    command.upgrade(cfg, "head")


def _locked_upgrade(sync_connection) -> None:  # noqa: ANN001
    sync_connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
    _upgrade(sync_connection)


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema; safe to call from many processes at once."""
    if engine.dialect.name == "sqlite":
        # SQLite has no advisory locks: a lock file beside the database queues other processes, taken before
        # the first connection so no two processes even open a new file at once.
        with _file_lock(engine.url.database):
            async with engine.connect() as conn:
                await conn.run_sync(_upgrade)
                await conn.commit()
        return
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # A transaction-scoped advisory lock, taken in the migration's own transaction: it is released by
            # that transaction's end even behind PgBouncer in transaction mode, where a session lock taken in
            # one transaction and released in another can land on different server connections.
            await conn.run_sync(_locked_upgrade)
            await conn.commit()
        else:
            await conn.run_sync(_upgrade)
            await conn.commit()


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
