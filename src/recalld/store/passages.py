"""Passages: rows, tags, pages, and nearest-neighbour search.

Search has two ways to the same answer. Exact: read the candidates' vectors and rank them by cosine
similarity (numpy here, or pgvector's operator in SQL). Indexed: pgvector's HNSW index, for archives
too large to read whole. pgvector 0.6 filters HNSW candidates *after* the index scan, so a filtered query
may come back short; the indexed way is therefore used only above `exact_max` candidates, and falls back
to the exact way whenever it returns fewer rows than the filters admit. Either way a search returns
min(top_k, matching passages), nearest first (contract R11).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.archives import ids_of_agent
from recalld.store.paging import page
from recalld.store.schema import agents, archives, passage_tags, passages
from recalld.store.vectors import VectorLayout

# Rows read per round trip when ranking exactly.
_SCAN_BATCH = 2048
# HNSW candidate list size: at least this, and a few times top_k.
_MIN_EF_SEARCH = 100
_MAX_EF_SEARCH = 1000


# What archival calls need of an agent, with its own archive's id: one indexed read, built once.
_AGENT_INFO = (
    sa.select(agents.c.id, agents.c.name, agents.c.timezone, agents.c.embedding_config,
              archives.c.id.label("archive_id"))
    .select_from(agents)
    .outerjoin(archives, sa.and_(archives.c.organization_id == agents.c.organization_id,
                                 archives.c.owner_agent_id == agents.c.id))
    .where(agents.c.organization_id == sa.bindparam("org"), agents.c.id == sa.bindparam("agent"))
)
# The columns a search result shows.
_RESULT_COLUMNS = ("id", "text", "tags", "created_at")


async def agent_info(conn: AsyncConnection, org_id: str, agent_id: str) -> dict | None:
    """id, name, timezone, embedding_config and archive_id (its own archive, or None) of an agent."""
    row = (await conn.execute(_AGENT_INFO, {"org": org_id, "agent": agent_id})).mappings().first()
    return dict(row) if row else None


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


async def insert(conn: AsyncConnection, layout: VectorLayout, rows: list[dict], vectors: np.ndarray) -> None:
    """Insert passages (rows without their vectors) and their tags; vectors are in row order."""
    table = layout.table
    values = []
    for row, vector in zip(rows, vectors, strict=True):
        value = {**row, "embedding": to_blob(vector), "embedding_dim": int(vector.shape[0])}
        column = layout.column(value["embedding_dim"])
        if column is not None:
            value[column.name] = vector
        values.append(value)
    # One statement per shape: executemany needs every row to name the same columns.
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for value in values:
        shapes.setdefault(tuple(sorted(value)), []).append(value)
    for group in shapes.values():
        await conn.execute(table.insert(), group)
    tag_rows = [
        {"organization_id": row["organization_id"], "passage_id": row["id"], "tag": tag}
        for row in rows
        for tag in row.get("tags") or []
    ]
    if tag_rows:
        await conn.execute(passage_tags.insert(), tag_rows)


async def delete(conn: AsyncConnection, org_id: str, passage_id: str, archive_ids: sa.Select | list[str]) -> bool:
    """Delete a passage if it is in one of the archives; whether it was."""
    result = await conn.execute(
        passages.delete().where(
            passages.c.organization_id == org_id,
            passages.c.id == passage_id,
            passages.c.archive_id.in_(archive_ids),
        )
    )
    return result.rowcount > 0


async def count_for_agent(conn: AsyncConnection, org_id: str, agent_id: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(passages)
        .where(passages.c.organization_id == org_id, passages.c.archive_id.in_(ids_of_agent(org_id, agent_id)))
    )
    return int((await conn.execute(query)).scalar_one())


async def list_page(
    conn: AsyncConnection,
    org_id: str,
    archive_ids: sa.Select | list[str],
    *,
    text_search: str | None,
    before: str | None,
    after: str | None,
    limit: int,
    ascending: bool,
) -> list[dict]:
    query = sa.select(passages).where(passages.c.organization_id == org_id, passages.c.archive_id.in_(archive_ids))
    if text_search:
        query = query.where(sa.func.lower(passages.c.text).contains(text_search.lower(), autoescape=True))
    return await page(
        conn, query, passages, org_id=org_id, before=before, after=after, limit=limit, ascending=ascending
    )


def search_filters(
    table: sa.Table,
    org_id: str,
    archive_ids: sa.Select | list[str],
    *,
    handle: str,
    dim: int,
    tags: list[str] | None = None,
    match_all_tags: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list:
    """Which passages of `table` (the layout's passages table) a search may return: in the archives,
    embedded by the same model, with the tags, in the dates."""
    conditions = [
        table.c.organization_id == org_id,
        table.c.archive_id.in_(archive_ids),
        table.c.embedding_handle == handle,
        table.c.embedding_dim == dim,
    ]
    if tags:
        wanted = sorted(set(tags))
        tagged = sa.select(passage_tags.c.passage_id).where(
            passage_tags.c.organization_id == org_id, passage_tags.c.tag.in_(wanted)
        )
        if match_all_tags:
            tagged = tagged.group_by(passage_tags.c.passage_id).having(
                sa.func.count(sa.distinct(passage_tags.c.tag)) == len(wanted)
            )
        conditions.append(table.c.id.in_(tagged))
    if start is not None:
        conditions.append(table.c.created_at >= start)
    if end is not None:
        conditions.append(table.c.created_at <= end)
    return conditions


async def nearest(
    conn: AsyncConnection,
    layout: VectorLayout,
    conditions: list,
    query_vector: np.ndarray,
    top_k: int,
    *,
    exact_max: int,
) -> list[tuple[dict, float]]:
    """The top_k passages nearest the (unit) query vector among those the conditions (from search_filters
    on layout.table) admit, nearest first, each with its cosine similarity. Rows hold id, text, tags and
    created_at."""
    dim = int(query_vector.shape[0])
    if layout.column(dim) is None:
        ranked = await _exact_numpy(conn, layout.table, conditions, query_vector, top_k)
    else:
        ranked = await _pgvector(conn, layout, conditions, query_vector, top_k, exact_max)
    return await _rows_in_order(conn, layout.table, conditions[0], ranked)


async def _exact_numpy(
    conn: AsyncConnection, table: sa.Table, conditions: list, query_vector: np.ndarray, top_k: int
) -> list[tuple[str, float]]:
    """Rank every candidate by dot product (vectors are unit length), reading in batches."""
    best_ids: list[str] = []
    best_scores = np.zeros(0, dtype=np.float32)
    query = query_vector.astype(np.float32)
    async for batch in _in_batches(conn, sa.select(table.c.id, table.c.embedding).where(*conditions)):
        ids = [row[0] for row in batch]
        matrix = np.frombuffer(b"".join(row[1] for row in batch), dtype="<f4").reshape(len(ids), -1)
        scores = np.concatenate([best_scores, matrix @ query])
        ids = best_ids + ids
        keep = np.argsort(-scores, kind="stable")[:top_k]
        best_ids = [ids[i] for i in keep]
        best_scores = scores[keep]
    return list(zip(best_ids, (float(s) for s in best_scores), strict=True))


async def _in_batches(conn, query: sa.Select) -> AsyncIterator[list]:
    """Rows in batches without holding them all: a server-side cursor where the connection streams
    (asyncpg), the driver's own lazy cursor otherwise (SQLite)."""
    if hasattr(conn, "stream"):
        result = await conn.stream(query)
        async for batch in result.partitions(_SCAN_BATCH):
            yield batch
    else:
        for batch in (await conn.execute(query)).partitions(_SCAN_BATCH):
            yield batch


def indexed_query(layout: VectorLayout, conditions: list, query_vector: np.ndarray, top_k: int) -> sa.Select:
    """The query HNSW answers: the filters, ordered by cosine distance to the query vector."""
    table = layout.table
    dim = int(query_vector.shape[0])
    distance = layout.column(dim).op("<=>", return_type=sa.Float)(layout.vector(dim, query_vector.tolist()))
    return sa.select(table.c.id, distance.label("distance")).where(*conditions).order_by(distance).limit(top_k)


def exact_query(layout: VectorLayout, conditions: list, query_vector: np.ndarray, top_k: int,
                bound: int | None = None) -> sa.Select:
    """The same, measured on every candidate: the subquery (a LIMIT or OFFSET 0) keeps the planner from
    ordering through the index. With `bound`, at most bound + 1 candidates are measured and each row also
    carries `candidates`, how many were: more than `bound` means the answer is incomplete."""
    table = layout.table
    dim = int(query_vector.shape[0])
    distance = layout.column(dim).op("<=>", return_type=sa.Float)(layout.vector(dim, query_vector.tolist()))
    measured = sa.select(table.c.id, distance.label("distance")).where(*conditions)
    measured = (measured.offset(0) if bound is None else measured.limit(bound + 1)).subquery()
    columns = [measured.c.id, measured.c.distance]
    if bound is not None:
        columns.append(sa.func.count().over().label("candidates"))
    return sa.select(*columns).order_by(measured.c.distance, measured.c.id).limit(top_k)


async def _pgvector(
    conn: AsyncConnection,
    layout: VectorLayout,
    conditions: list,
    query_vector: np.ndarray,
    top_k: int,
    exact_max: int,
) -> list[tuple[str, float]]:
    # Small enough to measure every candidate (the usual case): one statement.
    bound = max(exact_max, top_k)
    rows = (await conn.execute(exact_query(layout, conditions, query_vector, top_k, bound))).all()
    if not rows or rows[0].candidates <= bound:
        return [(r[0], 1.0 - float(r[1])) for r in rows]
    ef_search = max(_MIN_EF_SEARCH, min(_MAX_EF_SEARCH, 4 * top_k))
    await conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {int(ef_search)}"))
    rows = (await conn.execute(indexed_query(layout, conditions, query_vector, top_k))).all()
    if len(rows) < top_k:
        # The index's candidates were mostly filtered away (other archives, tags, dates): measure them all.
        rows = (await conn.execute(exact_query(layout, conditions, query_vector, top_k))).all()
    return [(r[0], 1.0 - float(r[1])) for r in rows]


async def _rows_in_order(
    conn: AsyncConnection, table: sa.Table, org_condition, ranked: Iterable[tuple[str, float]]
) -> list[tuple[dict, float]]:
    ranked = list(ranked)
    if not ranked:
        return []
    ids = [passage_id for passage_id, _ in ranked]
    query = sa.select(*(table.c[name] for name in _RESULT_COLUMNS)).where(org_condition, table.c.id.in_(ids))
    rows = {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}
    return [(rows[passage_id], score) for passage_id, score in ranked if passage_id in rows]
