"""The one place that knows how many databases exist: organization → shard → primary | replica.

Business code asks for `router.write(org_id)` or `router.read(org_id)` and gets a connection inside a
transaction; replicas and shards slot in here without touching a service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from recalld.errors import Unavailable
from recalld.settings import Settings
from recalld.store.engine import make_engine, make_pg_engine

log = logging.getLogger(__name__)


class StoreRouter:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.primary: AsyncEngine = make_engine(settings)
        self.replicas: list[AsyncEngine] = [make_pg_engine(u, settings) for u in settings.pg_replica_uris]
        self.dialect = self.primary.dialect.name
        # SQLite has one writer; queueing writers here avoids SQLITE_BUSY upgrades inside the process.
        self._sqlite_write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self._next_replica = 0

    def engines(self) -> list[AsyncEngine]:
        return [self.primary, *self.replicas]

    @asynccontextmanager
    async def write(self, organization_id: str) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction on the organization's primary; commits on success."""
        if self._sqlite_write_lock is not None:
            async with self._sqlite_write_lock, _unavailable_on_failure(), self.primary.begin() as conn:
                yield conn
        else:
            async with _unavailable_on_failure(), self.primary.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read(self, organization_id: str, *, fresh: bool = True) -> AsyncIterator[AsyncConnection]:
        """A read-only connection; `fresh=False` allows a replica that may lag behind the primary."""
        engine = self.primary
        if not fresh and self.replicas:
            engine = self.replicas[self._next_replica % len(self.replicas)]
            self._next_replica += 1
        async with _unavailable_on_failure(), engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        for engine in self.engines():
            await engine.dispose()


@asynccontextmanager
async def _unavailable_on_failure() -> AsyncIterator[None]:
    """Turn an exhausted pool or an unreachable database into 503 + Retry-After, not a hang or a 500."""
    try:
        yield
    except sa_exc.TimeoutError as e:
        raise Unavailable("Database connection pool exhausted; retry shortly.", retry_after_s=1) from e
    except (OSError, ConnectionError) as e:
        log.warning("database unavailable: %s", e)
        raise Unavailable("Database unavailable; retry shortly.", retry_after_s=2) from e
    except sa_exc.DBAPIError as e:
        if e.connection_invalidated or isinstance(e.orig, (OSError, ConnectionError)):
            log.warning("database connection lost: %s", e)
            raise Unavailable("Database unavailable; retry shortly.", retry_after_s=2) from e
        raise
