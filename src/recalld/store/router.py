"""The one place that knows how many databases exist: organization → shard → primary | replica.

Business code asks for `router.write(org_id)` or `router.read(org_id)` and gets a connection inside a
transaction; replicas and shards slot in here without touching a service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from recalld.errors import Unavailable
from recalld.obs import tracing
from recalld.obs.metrics import DB_POOL_WAIT
from recalld.settings import Settings
from recalld.store.engine import make_engine, make_pg_engine, make_sqlite_sync_engine

log = logging.getLogger(__name__)


class StoreRouter:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.primary: AsyncEngine = make_engine(settings)
        # The same pool, with no transaction around statements: see statement().
        self._primary_autocommit = self.primary.execution_options(isolation_level="AUTOCOMMIT")
        self.replicas: list[AsyncEngine] = [make_pg_engine(u, settings) for u in settings.pg_replica_uris]
        self.dialect = self.primary.dialect.name
        # SQLite is a local file: statements run synchronously on the event loop (tens of microseconds each),
        # which costs far less than handing every statement to a driver thread. The async engine stays for
        # migrations.
        self._sqlite = make_sqlite_sync_engine(settings) if self.dialect == "sqlite" else None
        # SQLite has one writer; queueing writers here avoids SQLITE_BUSY upgrades inside the process.
        self._sqlite_write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self._next_replica = 0
        self._write_span = {"db.system": self.dialect, "recalld.db.transaction": "write"}
        self._read_span = {"db.system": self.dialect, "recalld.db.transaction": "read"}

    def engines(self) -> list[AsyncEngine]:
        return [self.primary, *self.replicas]

    def pool_stats(self) -> list[tuple[str, int, int, int]]:
        """(engine, pool size, checked out, overflow) for each pooled engine, for /metrics."""
        named = [("primary", self.primary.sync_engine)] + [
            (f"replica{i}", e.sync_engine) for i, e in enumerate(self.replicas)
        ]
        if self._sqlite is not None:
            named = [("primary", self._sqlite)]
        out = []
        for name, engine in named:
            pool = engine.pool
            if hasattr(pool, "checkedout"):
                out.append((name, pool.size(), pool.checkedout(), max(0, pool.overflow())))
        return out

    @asynccontextmanager
    async def write(self, organization_id: str) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction on the organization's primary; commits on success."""
        with tracing.child_span("db write", self._write_span, tracing.CLIENT):
            if self._sqlite is not None:
                async with self._sqlite_write_lock, _unavailable_on_failure():
                    with self._sqlite.begin() as conn:
                        yield SyncConnection(conn)
            else:
                started = time.perf_counter()
                async with _unavailable_on_failure(), self.primary.begin() as conn:
                    DB_POOL_WAIT.labels("primary").observe(time.perf_counter() - started)
                    yield conn

    @asynccontextmanager
    async def statement(self, organization_id: str) -> AsyncIterator[AsyncConnection]:
        """A connection on the organization's primary with no transaction around it: each statement commits
        on its own. For work that is one statement, or statements that need not be atomic together: on
        PostgreSQL it saves the BEGIN and COMMIT round trips, each of which costs this server as much CPU as
        a statement. On SQLite (no round trips) it is write()."""
        if self._sqlite is not None:
            async with self.write(organization_id) as conn:
                yield conn
            return
        with tracing.child_span("db write", self._write_span, tracing.CLIENT):
            async with self._autocommit() as conn:
                yield conn

    @asynccontextmanager
    async def single_read(self, organization_id: str) -> AsyncIterator[AsyncConnection]:
        """A connection on the primary for reads that need no transaction (one statement, or statements that
        need no snapshot in common): on PostgreSQL the autocommit connection of statement(), which saves the
        BEGIN and ROLLBACK round trips of read(); on SQLite read()."""
        if self._sqlite is not None:
            async with self.read(organization_id) as conn:
                yield conn
            return
        with tracing.child_span("db read", self._read_span, tracing.CLIENT):
            async with self._autocommit() as conn:
                yield conn

    @asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A pooled primary connection without a transaction (statement() and single_read() on PostgreSQL)."""
        started = time.perf_counter()
        async with _unavailable_on_failure(), self._primary_autocommit.connect() as conn:
            DB_POOL_WAIT.labels("primary").observe(time.perf_counter() - started)
            yield conn

    @asynccontextmanager
    async def read(self, organization_id: str, *, fresh: bool = True) -> AsyncIterator[AsyncConnection]:
        """A read-only connection; `fresh=False` allows a replica that may lag behind the primary."""
        with tracing.child_span("db read", self._read_span, tracing.CLIENT):
            if self._sqlite is not None:
                async with _unavailable_on_failure():
                    with self._sqlite.connect() as conn:
                        yield SyncConnection(conn)
                return
            engine = self.primary
            if not fresh and self.replicas:
                engine = self.replicas[self._next_replica % len(self.replicas)]
                self._next_replica += 1
            async with _unavailable_on_failure(), engine.connect() as conn:
                yield conn

    async def dispose(self) -> None:
        for engine in self.engines():
            await engine.dispose()
        if self._sqlite is not None:
            self._sqlite.dispose()


class SyncConnection:
    """The AsyncConnection interface the stores use (`await conn.execute(...)`), over a synchronous SQLite
    connection. Its awaits never suspend, so a block of statements runs without interleaving."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection):
        self._conn = conn

    @property
    def dialect(self):  # noqa: ANN201
        return self._conn.dialect

    async def execute(self, statement, parameters=None):  # noqa: ANN001, ANN201
        return self._conn.execute(statement, parameters)

    async def scalar(self, statement, parameters=None):  # noqa: ANN001, ANN201
        return self._conn.scalar(statement, parameters)

    async def run_sync(self, fn, *args, **kwargs):  # noqa: ANN001, ANN201
        return fn(self._conn, *args, **kwargs)

    async def commit(self) -> None:
        self._conn.commit()


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
