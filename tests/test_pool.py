"""The PostgreSQL pool's liveness checks: a pooled connection the server dropped while it sat idle is
replaced before use; a busy connection is handed out without a ping."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from recalld.settings import Settings
from recalld.store.router import StoreRouter
from tests.servers import create_pg_database, drop_pg_database


@pytest.fixture
async def pg_uri():
    uri = create_pg_database()
    yield uri
    drop_pg_database(uri)


async def _backend_pid(router: StoreRouter) -> int:
    async with router.read("org") as conn:
        return (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()


async def _terminate(uri: str, pid: int) -> None:
    admin = StoreRouter(Settings(RECALLD_PG_URI=uri, RECALLD_PG_POOL_SIZE=1, RECALLD_PG_POOL_PRE_PING=False))
    try:
        async with admin.write("org") as conn:
            assert (await conn.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))).scalar_one()
    finally:
        await admin.dispose()


def _counting_pings(router: StoreRouter) -> list[int]:
    """Counts the statements the pool itself sends (the ping is asyncpg's empty statement `;`)."""
    pings: list[int] = []
    dialect = router.primary.sync_engine.dialect
    original = dialect.do_ping

    def do_ping(dbapi_connection):  # noqa: ANN001, ANN202
        pings.append(1)
        return original(dbapi_connection)

    dialect.do_ping = do_ping
    return pings


async def test_an_idle_connection_dropped_by_the_server_is_replaced(pg_uri):
    router = StoreRouter(Settings(RECALLD_PG_URI=pg_uri, RECALLD_PG_POOL_SIZE=1, RECALLD_PG_POOL_PING_IDLE=0.2))
    try:
        first = await _backend_pid(router)
        await _terminate(pg_uri, first)
        await asyncio.sleep(0.3)  # idle past the threshold: the next checkout pings and reconnects
        second = await _backend_pid(router)
        assert second != first
    finally:
        await router.dispose()


async def test_a_busy_connection_is_not_pinged(pg_uri):
    router = StoreRouter(Settings(RECALLD_PG_URI=pg_uri, RECALLD_PG_POOL_SIZE=1, RECALLD_PG_POOL_PING_IDLE=30))
    try:
        pings = _counting_pings(router)
        pids = {await _backend_pid(router) for _ in range(20)}
        assert len(pids) == 1 and pings == []
    finally:
        await router.dispose()


async def test_ping_idle_zero_pings_every_checkout(pg_uri):
    router = StoreRouter(Settings(RECALLD_PG_URI=pg_uri, RECALLD_PG_POOL_SIZE=1, RECALLD_PG_POOL_PING_IDLE=0))
    try:
        first = await _backend_pid(router)
        await _terminate(pg_uri, first)
        assert await _backend_pid(router) != first  # SQLAlchemy's own pre-ping noticed at once
    finally:
        await router.dispose()
