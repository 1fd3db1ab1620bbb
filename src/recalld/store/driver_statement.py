"""A turn's hot PostgreSQL statements, compiled by SQLAlchemy once and run by asyncpg directly.

Every execution through SQLAlchemy costs this server about 0.15 ms of CPU beyond asyncpg's own work (the
greenlet hop, the compiled-cache lookup, building the parameters, the execution context, the result
wrapper): as much as the whole round trip, on a statement that is already built once and reused. A turn
runs three such statements (lease, opening, commit), so they go to the driver connection with the SQL,
the bind processors and the result processors SQLAlchemy compiled for them: the same SQL, the same values
in and out. Errors come back as SQLAlchemy would raise them: a lost connection is invalidated and raised as
a DBAPIError with connection_invalidated set (router turns it into 503), anything else as a DBAPIError.

Only for statements with named bind parameters (no expanding IN lists, no literal_execute). On PostgreSQL
connections from router.statement or router.single_read (autocommit) asyncpg runs the statement in its own
implicit transaction; on any other connection, and on SQLite, it goes through SQLAlchemy, inside the
connection's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

# What leaves the connection unusable; any other error leaves it fit for the next statement. The client-side
# errors mean a closed connection or a protocol state asyncpg cannot go on from (seen when the server's
# termination notice arrives while a statement starts).
_DISCONNECTS = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    ConnectionError,
)


_REQUIRED = object()


@dataclass(frozen=True)
class _Plan:
    dialect: Dialect  # held so that the cache key, its id, stays unique
    sql: str
    # (name, bind processor or None, default or _REQUIRED) in the order of $1, $2, ...
    binds: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...]
    # (key, result processor or None) per result column, for statements that return rows
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]


class DriverStatement:
    def __init__(self, statement: sa.Executable):
        self.statement = statement
        self._plans: dict[int, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(id(dialect))
        if plan is None:
            plan = self._plans[id(dialect)] = _compile(self.statement, dialect)
        return plan

    async def fetch(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The statement's rows as dicts keyed like SQLAlchemy's mappings()."""
        if conn.dialect.name != "postgresql":  # SQLite: through SQLAlchemy, as ever
            return [dict(row) for row in (await conn.execute(self.statement, params)).mappings()]
        pooled = await conn.get_raw_connection()
        if not getattr(pooled.dbapi_connection, "autocommit", False):
            # In a transaction SQLAlchemy begins lazily, a statement run beside it would run outside it.
            return [dict(row) for row in (await conn.execute(self.statement, params)).mappings()]
        plan = self._plan(conn.dialect)
        arguments = []
        for name, process, default in plan.binds:
            value = params[name] if default is _REQUIRED or name in params else default
            arguments.append(value if process is None else process(value))
        driver = pooled.driver_connection
        try:
            records = await driver.fetch(plan.sql, *arguments)
        except _DISCONNECTS as e:
            await conn.invalidate(e)
            raise sa_exc.DBAPIError(plan.sql, None, e, connection_invalidated=True) from e
        except asyncpg.PostgresError as e:
            raise sa_exc.DBAPIError(plan.sql, None, e) from e
        return [
            {key: (value if process is None or value is None else process(value))
             for (key, process), value in zip(plan.columns, record.values(), strict=True)}
            for record in records
        ]


def _compile(statement: sa.Executable, dialect: Dialect) -> _Plan:
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup is None:
        raise ValueError("the dialect does not use positional parameters")
    binds = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        if bind.expanding or bind.literal_execute:
            raise ValueError(f"bind parameter {name!r} is expanded at execution; run it through SQLAlchemy")
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        binds.append((name, process, _REQUIRED if bind.required else bind.effective_value))
    columns = tuple(
        (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
        for column in _returned(statement)
    )
    return _Plan(dialect, compiled.string, tuple(binds), columns)


def _returned(statement: sa.Executable) -> list[sa.ColumnElement]:
    """The columns a SELECT or a DML ... RETURNING gives back, in order."""
    columns = getattr(statement, "selected_columns", None)
    if columns is None:
        columns = getattr(statement, "exported_columns", ())
    return list(columns)
