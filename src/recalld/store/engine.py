"""Building SQLAlchemy engines from settings: pool settings for PostgreSQL, pragmas for SQLite."""

from __future__ import annotations

import time

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from recalld.settings import Settings, to_asyncpg_url


def _json_dumps(value) -> str:  # noqa: ANN001
    # orjson is fast and keeps non-ASCII text as it is, so substring searches over JSON text work.
    return orjson.dumps(value).decode()


JSON_CODEC = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def make_pg_engine(uri: str, settings: Settings) -> AsyncEngine:
    """An asyncpg engine; with pooling off it keeps no connections and no prepared statements,
    which is what PgBouncer in transaction mode needs."""
    url = to_asyncpg_url(uri)
    if settings.disable_pooling:
        return create_async_engine(
            url,
            poolclass=NullPool,
            **JSON_CODEC,
            connect_args={"statement_cache_size": 0, "prepared_statement_cache_size": 0},
        )
    ping_every_checkout = settings.pg_pool_pre_ping and settings.pg_pool_ping_idle_s == 0
    engine = create_async_engine(
        url,
        pool_size=settings.pg_pool_size,
        max_overflow=settings.pg_max_overflow,
        pool_timeout=settings.pg_pool_timeout,
        pool_recycle=settings.pg_pool_recycle,
        pool_pre_ping=ping_every_checkout,
        pool_use_lifo=True,
        **JSON_CODEC,
        connect_args={"timeout": settings.pg_pool_timeout},
    )
    if settings.pg_pool_pre_ping and not ping_every_checkout:
        _ping_when_idle(engine, settings.pg_pool_ping_idle_s)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Pre-ping a pooled connection only when it has sat idle for idle_s or more: a connection the server,
    a proxy or a firewall dropped while idle is replaced before use (the pool reconnects when a checkout
    listener raises DisconnectionError), without a ping in front of every busy transaction."""
    pool, dialect = engine.sync_engine.pool, engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:  # noqa: ANN001
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:  # noqa: ANN001
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_s:
            return  # new, or used moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as e:  # noqa: BLE001 - any failure means: not usable, reconnect
            raise sa_exc.DisconnectionError(f"idle connection failed its ping: {e}") from e


def make_sqlite_engine(settings: Settings) -> AsyncEngine:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(settings.database_url, **JSON_CODEC)

    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; busy_timeout makes other processes
    # (recalld migrate, recalld keys) wait instead of failing with "database is locked".
    # busy_timeout first: switching a new file to WAL needs the write lock another process may hold.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Pages are read through a memory map instead of a read() call each, and a larger page cache keeps the
    # hot pages (agents, the newest messages) between transactions.
    cursor.execute("PRAGMA mmap_size=268435456")
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.close()


def make_sqlite_sync_engine(settings: Settings) -> Engine:
    """The synchronous engine that serves SQLite traffic on the event loop (see router.SyncConnection)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # LIFO: statements run one at a time on the loop, so the same connection serves nearly every transaction
    # and its page cache stays valid (SQLite drops a connection's cache when another one wrote meanwhile).
    engine = create_engine(f"sqlite:///{settings.data_dir / 'recalld.db'}", pool_size=5, max_overflow=20,
                           pool_use_lifo=True, **JSON_CODEC)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_engine(settings: Settings) -> AsyncEngine:
    if settings.pg_uri:
        return make_pg_engine(settings.pg_uri, settings)
    return make_sqlite_engine(settings)
