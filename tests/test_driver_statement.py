"""store/driver_statement.py: asyncpg runs a compiled statement with SQLAlchemy's own processors, so values
go in and come out exactly as through SQLAlchemy; errors come back as SQLAlchemy raises them; inside a
transaction it runs in that transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from recalld.store.driver_statement import DriverStatement
from recalld.store.types import JSONType, UTCDateTime

_meta = sa.MetaData()
_things = sa.Table(
    "driver_statement_things",
    _meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("at", UTCDateTime()),
    sa.Column("doc", JSONType),
    sa.Column("flag", sa.Boolean),
    sa.Column("n", sa.BigInteger),
)
_names = ("id", "at", "doc", "flag", "n")
_insert = _things.insert().values({c: sa.bindparam(f"p_{c}", type_=_things.c[c].type) for c in _names})
_upsert = _insert.returning(*_things.c)
_select = sa.select(_things, sa.func.json_agg(sa.literal_column("1"), type_=sa.JSON).label("agg")).where(
    _things.c.id == sa.bindparam("key")
).group_by(*_things.c)


@pytest.fixture
async def things(pg_router):
    async with pg_router.write("org") as conn:
        await conn.run_sync(_meta.create_all)
    yield pg_router
    async with pg_router.write("org") as conn:
        await conn.run_sync(_meta.drop_all)


async def _fetch(router, statement: DriverStatement, params: dict) -> list[dict]:  # noqa: ANN001
    async with router.statement("org") as conn:
        return await statement.fetch(conn, params)


def _params(key: str) -> dict:
    # A non-UTC zone and JSON with nested values: both pass through bind processors.
    return {"p_id": key, "p_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5))),
            "p_doc": {"a": [1, "é", None], "b": {"c": True}}, "p_flag": True, "p_n": 2**40}


async def test_values_in_and_out_are_what_sqlalchemy_gives(things):
    returned = await _fetch(things, DriverStatement(_upsert), _params("one"))
    async with things.statement("org") as conn:
        via_sqlalchemy = [dict(r) for r in (await conn.execute(_select, {"key": "one"})).mappings()]
        via_driver = await DriverStatement(_select).fetch(conn, {"key": "one"})
    assert via_driver == via_sqlalchemy
    assert [type(v) for v in via_driver[0].values()] == [type(v) for v in via_sqlalchemy[0].values()]
    assert via_driver[0]["at"] == datetime(2026, 1, 1, 22, 4, 5, tzinfo=UTC)
    assert via_driver[0]["at"].tzinfo == UTC
    assert via_driver[0]["doc"] == {"a": [1, "é", None], "b": {"c": True}}
    assert via_driver[0]["agg"] == [1]
    assert returned == [{k: via_sqlalchemy[0][k] for k in _names}]


async def test_a_missing_parameter_is_an_error_not_a_null(things):
    params = _params("two")
    del params["p_n"]
    with pytest.raises(KeyError):
        await _fetch(things, DriverStatement(_upsert), params)


async def test_a_database_error_is_a_sqlalchemy_error_and_the_connection_stays_usable(things):
    statement = DriverStatement(_upsert)
    await _fetch(things, statement, _params("three"))
    async with things.statement("org") as conn:
        with pytest.raises(sa_exc.DBAPIError, match="duplicate key"):
            await statement.fetch(conn, _params("three"))
        assert await DriverStatement(_select).fetch(conn, {"key": "three"})


@pytest.mark.parametrize("settle_s", [0, 0.3], ids=["notice-racing", "notice-arrived"])
async def test_a_lost_connection_is_invalidated_and_raised_as_sqlalchemy_does(things, settle_s):
    async with things.statement("org") as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        async with things.statement("org") as killer:  # waits (up to 5 s) until the backend has exited
            await killer.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        await asyncio.sleep(settle_s)  # with 0, asyncpg may be reading the termination notice as it starts
        with pytest.raises(sa_exc.DBAPIError) as caught:
            await DriverStatement(_select).fetch(conn, {"key": "x"})
        assert caught.value.connection_invalidated
    async with things.statement("org") as conn:  # the pool hands out a working connection again
        assert await DriverStatement(_select).fetch(conn, {"key": "x"}) == []


async def test_inside_a_transaction_it_runs_in_that_transaction(things):
    with pytest.raises(RuntimeError):
        async with things.write("org") as conn:
            await DriverStatement(_upsert).fetch(conn, _params("four"))
            raise RuntimeError("roll back")
    async with things.statement("org") as conn:
        assert await DriverStatement(_select).fetch(conn, {"key": "four"}) == []


async def test_on_sqlite_it_goes_through_sqlalchemy_with_the_same_results(tmp_path):
    from recalld.settings import Settings
    from recalld.store.router import StoreRouter

    router = StoreRouter(Settings(RECALLD_DIR=str(tmp_path)))
    try:
        async with router.write("org") as conn:
            await conn.run_sync(_meta.create_all)
            returned = await DriverStatement(_upsert).fetch(conn, _params("five"))
        async with router.single_read("org") as conn:
            assert await DriverStatement(sa.select(_things)).fetch(conn, {}) == returned
        assert returned[0]["at"] == datetime(2026, 1, 1, 22, 4, 5, tzinfo=UTC)
        assert returned[0]["doc"] == {"a": [1, "é", None], "b": {"c": True}}
    finally:
        await router.dispose()


async def test_single_reads_and_statements_run_without_a_transaction_on_postgres(things):
    # What lets the driver run them directly, and saves their BEGIN and ROLLBACK round trips.
    for connect in (things.single_read, things.statement):
        async with connect("org") as conn:
            assert (await conn.get_raw_connection()).dbapi_connection.autocommit
    async with things.read("org") as conn:
        assert not (await conn.get_raw_connection()).dbapi_connection.autocommit
