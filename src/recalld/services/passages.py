"""Archival memory of agents: inserting passages, searching them by meaning, listing and deleting them.

Embedding happens before any write transaction opens and never inside one (ARCHITECTURE principle 3):
an insert reads the agent (short read), embeds, then writes the passage (short write). A failed
embedding leaves nothing behind. The agent loop's archival tools call insert() and search() too.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld import ids
from recalld.errors import InvalidInput, NotFound
from recalld.llm.embeddings import Embeddings, embedding_handle
from recalld.llm.tokens import count_text
from recalld.services.caller import Caller
from recalld.services.models import ModelResolver
from recalld.settings import Settings
from recalld.store import archives as archives_store
from recalld.store import passages as passages_store
from recalld.store import vectors
from recalld.store.router import StoreRouter
from recalld.store.types import utcnow

MAX_TOP_K = 1000
MAX_TAG_CHARS = 512
# Texts longer than this many characters are counted off the event loop (tokenizing megabytes takes a while).
_COUNT_IN_THREAD_BYTES = 64 * 1024


def passage_view(row: dict, vector: np.ndarray | None = None) -> dict:
    """A stored passage as the API returns it (Letta's Passage)."""
    embedding = vector if vector is not None else passages_store.from_blob(row["embedding"])
    return {
        "id": row["id"],
        "text": row["text"],
        "embedding": embedding.tolist(),
        "embedding_config": row.get("embedding_config"),
        "archive_id": row["archive_id"],
        "source_id": None,
        "file_id": None,
        "file_name": None,
        "metadata": row.get("metadata") or {},
        "tags": list(row.get("tags") or []),
        "is_deleted": False,
        "organization_id": row["organization_id"],
        "created_by_id": row.get("created_by_id"),
        "last_updated_by_id": row.get("last_updated_by_id"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def check_text(text: str, what: str = "text") -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string")
    if "\x00" in text:
        raise InvalidInput(f"{what} must not contain NUL (\\u0000) characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInput(f"{what} must be valid unicode (lone surrogates are not allowed)") from e
    return text


def check_tags(tags: list[str] | None) -> list[str]:
    """Tags as stored: strings of at most 512 characters, duplicates dropped, order kept."""
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise InvalidInput("tags must be a list of strings")
    for tag in tags:
        check_text(tag, "a tag")
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidInput(f"a tag may be at most {MAX_TAG_CHARS} characters")
    return list(dict.fromkeys(tags))


def _zone(timezone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_moment(value: datetime | str | None, timezone: str | None, *, end: bool) -> datetime | None:
    """A search bound in UTC: naive values are in the agent's zone; a date alone covers its whole day."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as e:
            raise InvalidInput(f"'{value[:64]}' is not an ISO 8601 date or datetime") from e
        if len(value.strip()) <= 10:
            moment = datetime.combine(moment.date(), time.max if end else time.min)
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(timezone))
    try:
        return moment.astimezone(UTC)
    except OverflowError as e:
        raise InvalidInput(f"{value} is out of range") from e


def search_timestamp(created_at: datetime, timezone: str | None) -> str:
    """A search result's time: ISO 8601 in the agent's zone, with microseconds (contract 1.3)."""
    return created_at.astimezone(_zone(timezone)).isoformat(timespec="microseconds")


class PassageService:
    def __init__(self, router: StoreRouter, settings: Settings, models: ModelResolver, embeddings: Embeddings):
        self.router = router
        self.settings = settings
        self.models = models
        self.embeddings = embeddings
        self.layout = vectors.NO_VECTORS
        self.quota = None  # services/quota.py StorageQuota, set by the app; None: no storage limit

    def shown(self, view: dict) -> dict:
        """A passage or archive as its organization sees it: no operator base URL in its config (R20)."""
        view["embedding_config"] = self.models.shown_embedding_config(view.get("embedding_config"))
        return view

    async def start(self) -> None:
        """Detect pgvector (adding its columns where needed) and load the local model."""
        self.layout = await vectors.prepare(self.router.primary)
        await self.embeddings.warm_up()

    def close(self) -> None:
        self.embeddings.close()

    # --- the agent and its model ----------------------------------------------------------------------

    async def _agent(self, conn: AsyncConnection, org_id: str, agent_id: str) -> dict:
        """id, name, timezone, embedding_config and archive_id (its own archive, if made yet); 404 if none."""
        agent = await passages_store.agent_info(conn, org_id, agent_id)
        if agent is None:
            raise NotFound(f"Agent with ID {agent_id} not found")
        return agent

    async def embedding_config(self, agent: dict) -> dict:
        """The agent's embedding config; agents without one use the default model (contract R3)."""
        if agent.get("embedding_config"):
            return agent["embedding_config"]
        return await self.models.resolve_embedding(self.settings.default_embedding)

    async def check_length(self, text: str, what: str = "Passage") -> None:
        """Refuse a passage (or query) over archival_memory_token_limit, naming the limit; stores nothing."""
        limit = self.settings.archival_memory_token_limit
        if len(text.encode("utf-8")) <= limit:  # a token covers at least one byte
            return
        if len(text) > _COUNT_IN_THREAD_BYTES:
            tokens = await asyncio.to_thread(count_text, text)
        else:
            tokens = count_text(text)
        if tokens > limit:
            raise InvalidInput(
                f"{what} is {tokens} tokens, over the archival memory limit of {limit} tokens "
                "(archival_memory_token_limit); nothing was stored."
            )

    # --- insert ---------------------------------------------------------------------------------------

    def new_row(self, caller: Caller, archive_id: str, text: str, tags: list[str], created_at: datetime | None,
                config: dict, metadata: dict | None = None) -> dict:
        now = utcnow()
        stamp = now if created_at is None else parse_moment(created_at, "UTC", end=False)
        return {
            "organization_id": caller.org_id,
            "id": ids.new_id("passage"),
            "archive_id": archive_id,
            "text": text,
            "tags": tags,
            "metadata": metadata or {},
            "embedding_handle": embedding_handle(config),
            "embedding_config": config,
            "created_by_id": caller.user_id,
            "last_updated_by_id": caller.user_id,
            "created_at": stamp,
            "updated_at": now,
        }

    async def insert(
        self,
        caller: Caller,
        agent_id: str,
        text: str,
        tags: list[str] | None = None,
        created_at: datetime | None = None,
    ) -> list[dict]:
        """Store one passage in the agent's own archive (made on first use); the stored Passage, in a list."""
        check_text(text)
        if not text.strip():
            raise InvalidInput("text must not be empty")
        tags = check_tags(tags)
        await self.check_length(text)
        async with self.router.read(caller.org_id) as conn:
            agent = await self._agent(conn, caller.org_id, agent_id)
        if self.quota is not None:
            await self.quota.check(caller.org_id, add_passages=1, add_bytes=len(text))
        config = await self.embedding_config(agent)
        vector = (await self.embeddings.embed(config, [text]))[0]
        archive_id = agent["archive_id"]
        row = self.new_row(caller, archive_id or "", text, tags, created_at, config)
        try:
            await self._write(caller, agent_id, row, vector, config, ensure_archive=archive_id is None)
        except sa.exc.IntegrityError:
            # The archive (or agent) went away between the read and the write: try once more from scratch.
            await self._write(caller, agent_id, row, vector, config, ensure_archive=True)
        row["embedding_dim"] = int(vector.shape[0])
        return [self.shown(passage_view(row, vector))]

    async def _write(self, caller: Caller, agent_id: str, row: dict, vector: np.ndarray, config: dict,
                     *, ensure_archive: bool) -> None:
        async with self.router.write(caller.org_id) as conn:
            if ensure_archive:
                agent = await self._agent(conn, caller.org_id, agent_id)
                row["archive_id"] = await archives_store.ensure_default(
                    conn, self.default_archive_row(caller, agent, config)
                )
            await passages_store.insert(conn, self.layout, [row], vector[None, :])

    def default_archive_row(self, caller: Caller, agent: dict, config: dict) -> dict:
        now = utcnow()
        return {
            "organization_id": caller.org_id,
            "id": ids.new_id("archive"),
            "name": f"{agent['name']}'s archive"[:512],
            "description": None,
            "metadata": {},
            "embedding_config": config,
            "vector_db_provider": "native",
            "owner_agent_id": agent["id"],
            "created_by_id": caller.user_id,
            "last_updated_by_id": caller.user_id,
            "created_at": now,
            "updated_at": now,
        }

    # --- search ---------------------------------------------------------------------------------------

    async def search(
        self,
        caller: Caller,
        agent_id: str,
        query: str,
        *,
        top_k: int = 5,
        tags: list[str] | None = None,
        tag_match_mode: str = "any",
        start_datetime: datetime | str | None = None,
        end_datetime: datetime | str | None = None,
    ) -> list[dict]:
        """The agent's passages nearest the query by meaning, nearest first: `{id, timestamp, content, tags}`.

        Only passages embedded by the agent's own model take part; there is no similarity threshold, so
        the answer has min(top_k, matching passages) items (contract R11)."""
        check_text(query, "query")
        await self.check_length(query, "Query")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidInput("top_k must be a positive integer")
        if tag_match_mode not in ("any", "all"):
            raise InvalidInput("tag_match_mode must be 'any' or 'all'")
        tags = check_tags(tags)
        async with self.router.read(caller.org_id) as conn:
            agent = await self._agent(conn, caller.org_id, agent_id)
        if not query.strip():
            return []
        timezone = agent.get("timezone")
        start = parse_moment(start_datetime, timezone, end=False)
        end = parse_moment(end_datetime, timezone, end=True)
        config = await self.embedding_config(agent)
        vector = (await self.embeddings.embed(config, [query]))[0]
        table = self.layout.table
        conditions = passages_store.search_filters(
            table,
            caller.org_id,
            archives_store.ids_of_agent(caller.org_id, agent_id),
            handle=embedding_handle(config),
            dim=int(vector.shape[0]),
            tags=tags,
            match_all_tags=tag_match_mode == "all",
            start=start,
            end=end,
        )
        async with self.router.read(caller.org_id) as conn:
            found = await passages_store.nearest(
                conn, self.layout, conditions, vector, min(top_k, MAX_TOP_K),
                exact_max=self.settings.archival_exact_search_max,
            )
        return [
            {
                "id": row["id"],
                "timestamp": search_timestamp(row["created_at"], timezone),
                "content": row["text"],
                "tags": list(row.get("tags") or []),
            }
            for row, _score in found
        ]

    # --- read and delete ------------------------------------------------------------------------------

    async def count(self, conn: AsyncConnection, org_id: str, agent_id: str) -> int:
        """How many passages the agent's archives hold (the prompt's archival count)."""
        return await passages_store.count_for_agent(conn, org_id, agent_id)

    async def list(
        self,
        caller: Caller,
        agent_id: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 100,
        ascending: bool = True,
        search: str | None = None,
    ) -> list[dict]:
        async with self.router.read(caller.org_id) as conn:
            await self._agent(conn, caller.org_id, agent_id)
            rows = await passages_store.list_page(
                conn,
                caller.org_id,
                archives_store.ids_of_agent(caller.org_id, agent_id),
                text_search=search,
                before=before,
                after=after,
                limit=limit,
                ascending=ascending,
            )
        return [self.shown(passage_view(r)) for r in rows]

    async def delete(self, caller: Caller, agent_id: str, passage_id: str) -> None:
        async with self.router.write(caller.org_id) as conn:
            await self._agent(conn, caller.org_id, agent_id)
            archive_ids = archives_store.ids_of_agent(caller.org_id, agent_id)
            if not await passages_store.delete(conn, caller.org_id, passage_id, archive_ids):
                raise NotFound(f"Passage with id {passage_id} not found in database.")
