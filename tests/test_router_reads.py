"""router.read on PostgreSQL: statements run without a transaction around them (no BEGIN/ROLLBACK round
trips), on the primary and on replicas, unless the caller asks for one; router.write keeps its transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from recalld.settings import Settings
from recalld.store.router import StoreRouter
from tests.servers import create_pg_database, drop_pg_database

# now() is the start of the transaction, statement_timestamp() of the statement: inside a transaction, the
# statement after a 0.2 s sleep starts 0.2 s after it. (Without one they differ by the round trip between
# asyncpg's prepare and execute, a millisecond or so.)
_SECOND_STATEMENT_IS_OWN_TRANSACTION = sa.text("SELECT statement_timestamp() - now() < interval '100 ms'")


async def _own_transaction(conn) -> bool:  # noqa: ANN001
    await conn.execute(sa.text("SELECT pg_sleep(0.2)"))
    return (await conn.execute(_SECOND_STATEMENT_IS_OWN_TRANSACTION)).scalar_one()


@pytest.fixture(scope="module")
async def replicated():
    uri = create_pg_database()
    # The primary doubles as its own replica: what is checked is how connections are handed out.
    router = StoreRouter(Settings(RECALLD_PG_URI=uri, RECALLD_PG_REPLICA_URIS=[uri], RECALLD_PG_POOL_SIZE=2))
    yield router
    await router.dispose()
    drop_pg_database(uri)


@pytest.mark.parametrize("fresh", [True, False], ids=["primary", "replica"])
async def test_reads_run_each_statement_on_its_own(replicated, fresh):
    async with replicated.read("org", fresh=fresh) as conn:
        assert await _own_transaction(conn)
    async with replicated.read("org", fresh=fresh, transaction=True) as conn:
        assert not await _own_transaction(conn)


async def test_writes_keep_their_transaction(replicated):
    async with replicated.write("org") as conn:
        assert not await _own_transaction(conn)
    async with replicated.statement("org") as conn:
        assert await _own_transaction(conn)


async def test_a_search_that_needs_set_local_gets_a_transaction(replicated):
    async with replicated.read("org", transaction=True) as conn:
        await conn.execute(sa.text("SET LOCAL statement_timeout = 1234"))
        assert (await conn.execute(sa.text("SHOW statement_timeout"))).scalar_one() == "1234ms"
