"""Passage search in the store, on the real backends: exact ranking (numpy on SQLite and plain PostgreSQL),
pgvector's HNSW index with its exact fallback, and pgvector columns arriving on a database after the fact."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from recalld.settings import to_asyncpg_url
from recalld.store import passages as passages_store
from recalld.store import vectors
from recalld.store.migrate import upgrade_to_head
from recalld.store.schema import archives
from recalld.store.types import utcnow
from tests.pgvector import shared_pgvector
from tests.servers import create_pg_database, drop_pg_database

ORG = "org-00000000-0000-4000-8000-000000000000"
HANDLE = "local/all-minilm-l6-v2"


@pytest.fixture(scope="session")
def pgvector():
    with shared_pgvector() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres", "pgvector"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    elif request.param == "postgres":
        uri = create_pg_database()
        yield to_asyncpg_url(uri)
        drop_pg_database(uri)
    else:
        server = request.getfixturevalue("pgvector")
        uri = server.create_database()
        yield to_asyncpg_url(uri)
        server.drop_database(uri)


def unit_vectors(count: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((count, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def make_archive(conn, archive_id: str) -> None:
    now = utcnow()
    await conn.execute(
        archives.insert().values(
            organization_id=ORG, id=archive_id, name=archive_id, vector_db_provider="native", created_at=now,
            updated_at=now,
        )
    )


async def store(conn, layout, archive_id: str, matrix: np.ndarray, prefix: str) -> list[str]:
    now = utcnow()
    rows = [
        {"organization_id": ORG, "id": f"{prefix}-{i}", "archive_id": archive_id, "text": f"{prefix} {i}",
         "tags": [], "embedding_handle": HANDLE, "created_at": now, "updated_at": now}
        for i in range(len(matrix))
    ]
    for start in range(0, len(rows), 1000):
        await passages_store.insert(conn, layout, rows[start : start + 1000], matrix[start : start + 1000])
    return [r["id"] for r in rows]


async def search(conn, layout, archive_ids: list[str], query: np.ndarray, top_k: int, exact_max: int):
    conditions = passages_store.search_filters(layout.table, ORG, archive_ids, handle=HANDLE, dim=query.shape[0])
    found = await passages_store.nearest(conn, layout, conditions, query, top_k, exact_max=exact_max)
    return [(row["id"], score) for row, score in found]


def test_search_ranks_exactly_like_brute_force(database_url):
    """More rows than one read batch, so the running top-k is merged across batches."""

    async def run():
        engine = create_async_engine(database_url)
        try:
            await upgrade_to_head(engine)
            layout = await vectors.prepare(engine)
            matrix = unit_vectors(5000)
            async with engine.begin() as conn:
                await make_archive(conn, "archive-a")
                ids = await store(conn, layout, "archive-a", matrix, "a")
            query = unit_vectors(1, seed=7)[0]
            async with engine.connect() as conn:
                found = await search(conn, layout, ["archive-a"], query, 10, exact_max=100_000)
            expected = np.argsort(-(matrix @ query), kind="stable")[:10]
            assert [passage_id for passage_id, _ in found] == [ids[i] for i in expected]
            assert np.allclose([score for _, score in found], (matrix @ query)[expected], atol=1e-5)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_hnsw_answers_large_archives_and_falls_back_when_filters_leave_it_short(pgvector):
    uri = pgvector.create_database()

    async def run():
        engine = create_async_engine(to_asyncpg_url(uri))
        try:
            await upgrade_to_head(engine)
            layout = await vectors.prepare(engine)
            assert set(layout.kinds) >= {384, 1536}
            big, small = unit_vectors(3000, seed=1), unit_vectors(3, seed=2)
            async with engine.begin() as conn:
                await make_archive(conn, "archive-big")
                await make_archive(conn, "archive-small")
                big_ids = await store(conn, layout, "archive-big", big, "big")
                small_ids = await store(conn, layout, "archive-small", small, "small")
                await conn.execute(sa.text("ANALYZE passages"))

            query = big[42]
            conditions = passages_store.search_filters(layout.table, ORG, ["archive-big"], handle=HANDLE, dim=384)
            plans = {}
            async with engine.connect() as conn:
                for name, built in (
                    ("indexed", passages_store.indexed_query(layout, conditions, query, 5)),
                    ("exact", passages_store.exact_query(layout, conditions, query, 5)),
                    ("bounded", passages_store.exact_query(layout, conditions, query, 5, bound=100)),
                ):
                    compiled = built.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
                    plans[name] = "\n".join(r[0] for r in await conn.execute(sa.text(f"EXPLAIN {compiled}")))
                # A stored vector as the query: the index must find it first.
                found = await search(conn, layout, ["archive-big"], query, 5, exact_max=0)
            assert "ix_passages_embedding_384_hnsw" in plans["indexed"]
            assert "ix_passages_embedding_384_hnsw" not in plans["exact"]
            assert "ix_passages_embedding_384_hnsw" not in plans["bounded"]
            assert found[0][0] == big_ids[42] and abs(found[0][1] - 1.0) < 1e-5 and len(found) == 5

            async with engine.connect() as conn:
                # The index's nearest 100 are nearly all from the big archive: the small one must still get
                # all three of its passages, in exact order.
                found = await search(conn, layout, ["archive-small"], big[42], 5, exact_max=0)
            expected = [small_ids[i] for i in np.argsort(-(small @ big[42]))]
            assert [passage_id for passage_id, _ in found] == expected
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    finally:
        pgvector.drop_database(uri)


def test_a_database_that_gains_pgvector_gets_its_columns_at_start_up(pgvector):
    uri = pgvector.create_database()

    async def run():
        engine = create_async_engine(to_asyncpg_url(uri))
        try:
            await upgrade_to_head(engine)
            # Make it look like a database migrated before pgvector was there: no vector columns, no extension.
            async with engine.begin() as conn:
                for dim in (384, 1536, 3072):
                    await conn.execute(sa.text(f"ALTER TABLE passages DROP COLUMN IF EXISTS embedding_{dim}"))
                await conn.execute(sa.text("DROP EXTENSION vector"))
                await make_archive(conn, "archive-old")
                await store(conn, vectors.NO_VECTORS, "archive-old", unit_vectors(700, seed=3), "old")
            layout = await vectors.prepare(engine)
            assert 384 in layout.kinds
            async with engine.connect() as conn:
                filled = (await conn.execute(sa.text("SELECT count(embedding_384) FROM passages"))).scalar_one()
                indexes = set((await conn.execute(sa.text(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'passages'"
                ))).scalars())
                found = await search(conn, layout, ["archive-old"], unit_vectors(700, seed=3)[5], 1, exact_max=0)
            assert filled == 700
            assert "ix_passages_embedding_384_hnsw" in indexes
            assert found[0][0] == "old-5"
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    finally:
        pgvector.drop_database(uri)


def test_prepare_finds_no_pgvector_on_sqlite_or_the_machines_postgres(tmp_path):
    uri = create_pg_database()

    async def run():
        for url in (f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}", to_asyncpg_url(uri)):
            engine = create_async_engine(url)
            try:
                await upgrade_to_head(engine)
                assert (await vectors.prepare(engine)).kinds == {}
            finally:
                await engine.dispose()

    try:
        asyncio.run(run())
    finally:
        drop_pg_database(uri)
