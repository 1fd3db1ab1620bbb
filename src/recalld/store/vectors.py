"""pgvector: detecting it, the vector columns of passages, and the SQL type that binds numpy vectors.

Passages keep their embedding as float32 bytes on every backend. Where PostgreSQL has the `vector`
extension, passages also carry one column per embedding size in use — `embedding_384`,
`embedding_1536` (vector) and `embedding_3072` (halfvec, where pgvector is new enough to have it) — each
with an HNSW index for cosine distance: one HNSW index covers one dimension, and vector's index stops at
2,000 dimensions. Migration 0003 adds them when the extension is there; `prepare()` runs at every
start-up, so a database that gained pgvector later gets the columns, indexes and back-filled vectors
then. The names here and in the migration are the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import UserDefinedType

from recalld.store.schema import passages

log = logging.getLogger(__name__)

# (dimensions, pgvector type) of the indexed columns.
VECTOR_COLUMNS = ((384, "vector"), (1536, "vector"), (3072, "halfvec"))
_LOCK_KEY = 0x7265_6361_6C6C_76  # "recallv": one instance prepares at a time
_BACKFILL_BATCH = 500


class PgVector(UserDefinedType):
    """pgvector's vector/halfvec; binds a sequence of floats as real[] and casts it on the server."""

    cache_ok = True

    def __init__(self, dim: int, kind: str = "vector"):
        self.dim = dim
        self.kind = kind

    def get_col_spec(self, **kw) -> str:
        return f"{self.kind}({self.dim})"

    def bind_expression(self, bindvalue):
        return sa.cast(sa.type_coerce(bindvalue, postgresql.ARRAY(sa.REAL)), self)

    def bind_processor(self, dialect):
        def process(value):
            if value is None:
                return None
            return value.tolist() if isinstance(value, np.ndarray) else list(value)

        return process


def column_name(dim: int) -> str:
    return f"embedding_{dim}"


@dataclass(frozen=True)
class VectorLayout:
    """Which embedding sizes have an indexed pgvector column in this database (none: exact search)."""

    kinds: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        table = passages.to_metadata(sa.MetaData())
        for dim, kind in self.kinds.items():
            table.append_column(sa.Column(column_name(dim), PgVector(dim, kind), nullable=True))
        object.__setattr__(self, "table", table)

    table: sa.Table = field(init=False, compare=False, repr=False)

    def column(self, dim: int) -> sa.Column | None:
        """The indexed column for vectors of this size, if the database has one."""
        return self.table.c[column_name(dim)] if dim in self.kinds else None

    def vector(self, dim: int, values) -> sa.ColumnElement:
        """A query vector as a SQL expression of the column's type."""
        return sa.cast(sa.type_coerce(sa.bindparam(None, list(values)), postgresql.ARRAY(sa.REAL)),
                       PgVector(dim, self.kinds[dim]))


NO_VECTORS = VectorLayout()


async def prepare(engine: AsyncEngine) -> VectorLayout:
    """Detect pgvector and make sure its columns, indexes and vectors are in place; the layout to use."""
    if engine.dialect.name != "postgresql":
        return NO_VECTORS
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        await conn.commit()
        try:
            layout = await _prepare(conn)
            await conn.commit()
        finally:
            await conn.rollback()
            await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            await conn.commit()
    if layout.kinds:
        log.info("archival search uses pgvector HNSW indexes for %s dimensions", sorted(layout.kinds))
    else:
        log.warning(
            "PostgreSQL has no pgvector extension: archival search reads every candidate passage exactly "
            "(the slow path). Install pgvector and restart to get HNSW indexes."
        )
    return layout


async def _prepare(conn: AsyncConnection) -> VectorLayout:
    installed = (await conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))).first()
    if installed is None:
        available = (
            await conn.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))
        ).first()
        if available is None:
            return NO_VECTORS
        try:
            async with conn.begin_nested():
                await conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sa.exc.DBAPIError as e:
            log.warning("pgvector is available but could not be created: %s", e.orig)
            return NO_VECTORS
    types = set(
        (await conn.execute(sa.text("SELECT typname FROM pg_type WHERE typname IN ('vector', 'halfvec')"))).scalars()
    )
    kinds = {dim: kind for dim, kind in VECTOR_COLUMNS if kind in types}
    columns = set(
        (await conn.execute(
            sa.text("SELECT column_name FROM information_schema.columns WHERE table_name = 'passages'")
        )).scalars()
    )
    indexes = set(
        (await conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'passages'"))).scalars()
    )
    # DDL only for what is missing: even ALTER TABLE ... IF NOT EXISTS takes an exclusive lock on the table,
    # which would stall every instance's archival traffic at each start of one of them.
    for dim, kind in kinds.items():
        for name, ddl in vector_ddl(dim, kind):
            if name not in columns | indexes:
                await conn.execute(sa.text(ddl))
    layout = VectorLayout(kinds)
    await _backfill(conn, layout)
    return layout


def vector_ddl(dim: int, kind: str) -> list[tuple[str, str]]:
    """(name, statement) of the column and indexes for one embedding size; migration 0003 has the same.

    Besides the HNSW index, a partial index holds the rows whose vector column is still empty (normally
    none), so the start-up back-fill finds them without reading the table."""
    column = column_name(dim)
    return [
        (column, f"ALTER TABLE passages ADD COLUMN IF NOT EXISTS {column} {kind}({dim})"),
        (
            f"ix_passages_{column}_hnsw",
            f"CREATE INDEX IF NOT EXISTS ix_passages_{column}_hnsw ON passages USING hnsw ({column} {kind}_cosine_ops)",
        ),
        (
            f"ix_passages_organization_id_id_no_{column}",
            f"CREATE INDEX IF NOT EXISTS ix_passages_organization_id_id_no_{column} ON passages "
            f"(organization_id, id) WHERE embedding_dim = {dim} AND {column} IS NULL",
        ),
    ]


async def _backfill(conn: AsyncConnection, layout: VectorLayout) -> None:
    """Copy vectors stored before the columns existed into them."""
    table = layout.table
    for dim in layout.kinds:
        column = layout.column(dim)
        filled = 0
        while True:
            rows = (
                await conn.execute(
                    sa.select(table.c.organization_id, table.c.id, table.c.embedding)
                    # The size as a literal, so the planner can match the partial index's predicate.
                    .where(table.c.embedding_dim == sa.literal_column(str(int(dim))), column.is_(None))
                    .limit(_BACKFILL_BATCH)
                )
            ).all()
            if not rows:
                break
            await conn.execute(
                table.update()
                .where(table.c.organization_id == sa.bindparam("o"), table.c.id == sa.bindparam("i"))
                .values({column.name: sa.bindparam("v", type_=column.type)}),
                [{"o": org, "i": pid, "v": np.frombuffer(blob, dtype="<f4")} for org, pid, blob in rows],
            )
            filled += len(rows)
        if filled:
            log.info("pgvector: filled %d stored %d-dimensional vectors into %s", filled, dim, column.name)
