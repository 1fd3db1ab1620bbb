"""Archival memory through the SDK (contract 5) on the three backends it runs on: SQLite (exact search),
PostgreSQL without pgvector (exact search, the slow path) and PostgreSQL with pgvector (HNSW index).

The pgvector server is forced onto its index (`RECALLD_ARCHIVAL_EXACT_SEARCH_MAX=0`), so every search there
goes through HNSW and, where the index's post-filtering comes back short, through the exact fallback.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from letta_client import BadRequestError, InternalServerError, Letta, NotFoundError, UnprocessableEntityError
from sqlalchemy.ext.asyncio import create_async_engine

from recalld.settings import to_asyncpg_url
from tests.pgvector import shared_pgvector
from tests.servers import RecalldServer, create_pg_database, drop_pg_database, server_env

BACKENDS = ("sqlite", "postgres", "pgvector")
MODEL = "openai/gpt-4o-mini"
QUALITY = json.loads((Path(__file__).parents[1] / "data" / "archival_quality.json").read_text())


@pytest.fixture(scope="session")
def pgvector():
    with shared_pgvector() as server:
        yield server


@pytest.fixture(scope="session", params=BACKENDS)
def archival_server(request, tmp_path_factory, fake_openai):
    backend = request.param
    tmp_dir = tmp_path_factory.mktemp(f"recalld-archival-{backend}")
    extra = {"RECALLD_LLM_TIMEOUT": "4", "RECALLD_LLM_MAX_RETRIES": "1"}
    pg_uri = None
    if backend == "postgres":
        pg_uri = create_pg_database()
    elif backend == "pgvector":
        pg_uri = request.getfixturevalue("pgvector").create_database()
        extra["RECALLD_ARCHIVAL_EXACT_SEARCH_MAX"] = "0"
    srv = RecalldServer(env=server_env(tmp_dir, pg_uri=pg_uri, openai_base_url=fake_openai.base_url, **extra))
    srv.backend = backend
    srv.start(tmp_dir)
    try:
        yield srv
    finally:
        srv.stop()
        if backend == "postgres":
            drop_pg_database(pg_uri)
        elif backend == "pgvector":
            request.getfixturevalue("pgvector").drop_database(pg_uri)


@pytest.fixture
def client(archival_server) -> Letta:
    return Letta(base_url=archival_server.url, max_retries=0, timeout=60)


@pytest.fixture
def agent(client):
    return client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "Sam"}])


def db_rows(server, sql: str, **params) -> list[tuple]:
    """Rows read straight from the database the server uses."""

    async def read() -> list[tuple]:
        pg_uri = server.env.get("RECALLD_PG_URI")
        url = to_asyncpg_url(pg_uri) if pg_uri else f"sqlite+aiosqlite:///{server.env['RECALLD_DIR']}/recalld.db"
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(sa.text(sql), params)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def texts(results) -> list[str]:
    return [r.content for r in results]


# --- insert, list, delete -------------------------------------------------------------------------------


def test_insert_returns_the_stored_passage_with_its_embedding(client, agent):
    created = client.agents.passages.create(agent.id, text="The user's dog is called Biscuit.", tags=["pets"])
    assert len(created) == 1
    passage = created[0]
    assert passage.id.startswith("passage-") and passage.archive_id.startswith("archive-")
    assert passage.text == "The user's dog is called Biscuit."
    assert passage.tags == ["pets"]
    assert len(passage.embedding) == 384
    assert abs(sum(x * x for x in passage.embedding) - 1.0) < 1e-3
    assert passage.embedding_config.handle == "local/all-minilm-l6-v2"
    assert passage.created_at is not None and passage.is_deleted is False
    [listed] = client.agents.passages.list(agent.id)
    assert listed.id == passage.id and listed.text == passage.text and listed.tags == ["pets"]


def test_insert_keeps_a_given_created_at(client, agent):
    when = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    [passage] = client.agents.passages.create(agent.id, text="An old memory.", created_at=when)
    assert passage.created_at == when
    [found] = client.agents.passages.search(agent.id, query="An old memory.").results
    assert found.timestamp == "2024-03-01T12:30:00.000000+00:00"


def test_list_pages_in_both_orders_and_filters_by_text(client, agent):
    made = [client.agents.passages.create(agent.id, text=f"note {i} about {'tea' if i % 2 else 'rain'}")[0]
            for i in range(5)]
    ids = [p.id for p in made]
    assert [p.id for p in client.agents.passages.list(agent.id)] == ids
    assert [p.id for p in client.agents.passages.list(agent.id, ascending=False)] == ids[::-1]
    first = client.agents.passages.list(agent.id, limit=2)
    rest = client.agents.passages.list(agent.id, limit=10, after=first[-1].id)
    assert [p.id for p in first + rest] == ids
    assert [p.id for p in client.agents.passages.list(agent.id, before=ids[3])] == ids[:3]
    assert [p.text for p in client.agents.passages.list(agent.id, search="TEA")] == ["note 1 about tea",
                                                                                     "note 3 about tea"]


def test_delete_removes_the_passage_and_a_second_delete_is_404(client, agent):
    [passage] = client.agents.passages.create(agent.id, text="to be forgotten")
    answer = client.agents.passages.delete(passage.id, agent_id=agent.id)
    assert answer == {"message": f"Memory id={passage.id} successfully deleted"}
    assert client.agents.passages.list(agent.id) == []
    with pytest.raises(NotFoundError) as e:
        client.agents.passages.delete(passage.id, agent_id=agent.id)
    assert passage.id in e.value.body["detail"]


def test_a_passage_cannot_be_deleted_through_another_agent(client, agent):
    other = client.agents.create(model=MODEL)
    [passage] = client.agents.passages.create(agent.id, text="mine, not yours")
    with pytest.raises(NotFoundError):
        client.agents.passages.delete(passage.id, agent_id=other.id)
    assert len(client.agents.passages.list(agent.id)) == 1


def test_unknown_agent_is_404_on_every_route(client):
    missing = f"agent-{uuid.uuid4()}"
    with pytest.raises(NotFoundError):
        client.agents.passages.create(missing, text="x")
    with pytest.raises(NotFoundError):
        client.agents.passages.list(missing)
    with pytest.raises(NotFoundError):
        client.agents.passages.search(missing, query="x")
    with pytest.raises(NotFoundError):
        client.agents.passages.delete("passage-x", agent_id=missing)


def test_another_organization_cannot_see_passages(client, agent, archival_server):
    client.agents.passages.create(agent.id, text="private fact")
    key = archival_server.cli("keys", "create", "--org", "archival-other-org").stdout.strip()
    stranger = Letta(base_url=archival_server.url, api_key=key, max_retries=0, timeout=30)
    with pytest.raises(NotFoundError):
        stranger.agents.passages.list(agent.id)
    with pytest.raises(NotFoundError):
        stranger.agents.passages.search(agent.id, query="private fact")


def test_deleting_an_agent_deletes_its_passages(client, archival_server):
    doomed = client.agents.create(model=MODEL)
    [passage] = client.agents.passages.create(doomed.id, text="gone with the agent", tags=["t"])
    client.agents.delete(doomed.id)
    assert db_rows(archival_server, "SELECT id FROM passages WHERE id = :p", p=passage.id) == []
    assert db_rows(archival_server, "SELECT passage_id FROM passage_tags WHERE passage_id = :p", p=passage.id) == []
    assert db_rows(archival_server, "SELECT id FROM archives WHERE id = :a", a=passage.archive_id) == []


def test_concurrent_first_inserts_share_one_archive(client, agent):
    errors = []

    def insert(i: int) -> None:
        try:
            client.agents.passages.create(agent.id, text=f"concurrent fact number {i}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    passages = client.agents.passages.list(agent.id)
    assert len(passages) == 8
    assert len({p.archive_id for p in passages}) == 1
    assert [a.id for a in client.archives.list(agent_id=agent.id)] == [passages[0].archive_id]


def test_archival_count_reaches_the_system_prompt(client, agent, archival_server):
    for i in range(3):
        client.agents.passages.create(agent.id, text=f"fact {i}")
    # A core memory edit recompiles the system message, with the current counts.
    client.agents.blocks.update("human", agent_id=agent.id, value="Sam, who likes tea")
    [(content,)] = db_rows(
        archival_server,
        "SELECT m.content FROM messages m JOIN agents a ON a.system_message_id = m.id "
        "AND a.organization_id = m.organization_id WHERE a.id = :a",
        a=agent.id,
    )
    content = json.loads(content) if isinstance(content, str) else content
    assert "3 total memories you created are stored in archival memory" in content[0]["text"]


# --- search -------------------------------------------------------------------------------------------------


def test_search_ranks_the_exact_text_first(client, agent):
    facts = ["The user's sister lives in Porto.", "The user drives a blue Corolla.", "The user likes Assam tea."]
    for fact in facts:
        client.agents.passages.create(agent.id, text=fact)
    for fact in facts:
        response = client.agents.passages.search(agent.id, query=fact, top_k=3)
        assert response.results[0].content == fact
        assert response.count == 3


def test_search_returns_top_k_nearest_with_no_threshold(client, agent):
    for fact in ["Cats purr when content.", "The stock market fell.", "Bread needs yeast.", "Mars is red."]:
        client.agents.passages.create(agent.id, text=fact)
    response = client.agents.passages.search(agent.id, query="kittens and their sounds", top_k=2)
    assert response.count == 2 and texts(response.results)[0] == "Cats purr when content."
    # Asking for more than there are returns them all, even the unrelated ones (R11).
    assert client.agents.passages.search(agent.id, query="kittens", top_k=50).count == 4
    assert client.agents.passages.search(agent.id, query="kittens").count == 4


def test_agent_without_passages_finds_nothing(client, agent):
    assert client.agents.passages.list(agent.id) == []
    response = client.agents.passages.search(agent.id, query="anything at all")
    assert response.count == 0 and response.results == []


def test_blank_query_finds_nothing(client, agent):
    client.agents.passages.create(agent.id, text="something")
    assert client.agents.passages.search(agent.id, query="   ").count == 0


def test_search_sees_only_the_agents_own_passages(client, agent):
    other = client.agents.create(model=MODEL)
    client.agents.passages.create(other.id, text="The other agent's secret recipe.")
    client.agents.passages.create(agent.id, text="A harmless note.")
    response = client.agents.passages.search(agent.id, query="The other agent's secret recipe.", top_k=5)
    assert texts(response.results) == ["A harmless note."]


def test_search_filters_by_tags_any_and_all(client, agent):
    client.agents.passages.create(agent.id, text="alpha", tags=["red", "blue"])
    client.agents.passages.create(agent.id, text="beta", tags=["red"])
    client.agents.passages.create(agent.id, text="gamma", tags=["green"])
    client.agents.passages.create(agent.id, text="delta")
    anyof = client.agents.passages.search(agent.id, query="letters", tags=["red", "green"], top_k=10)
    assert sorted(texts(anyof.results)) == ["alpha", "beta", "gamma"]
    allof = client.agents.passages.search(agent.id, query="letters", tags=["red", "blue"], tag_match_mode="all")
    assert texts(allof.results) == ["alpha"]
    assert allof.results[0].tags == ["red", "blue"]
    none = client.agents.passages.search(agent.id, query="letters", tags=["purple"])
    assert none.count == 0
    untagged = client.agents.passages.search(agent.id, query="delta", top_k=1)
    assert untagged.results[0].tags == []


def test_search_filters_by_dates_in_the_agents_timezone(client):
    tokyo = client.agents.create(model=MODEL, timezone="Asia/Tokyo")
    # 2024-05-01 23:30 in Tokyo is 14:30 UTC; 2024-05-02 01:00 in Tokyo is 2024-05-01 16:00 UTC.
    for text, when in (
        ("late on the first", datetime(2024, 5, 1, 14, 30, tzinfo=UTC)),
        ("early on the second", datetime(2024, 5, 1, 16, tzinfo=UTC)),
        ("a week later", datetime(2024, 5, 8, 3, tzinfo=UTC)),
    ):
        client.agents.passages.create(tokyo.id, text=text, created_at=when)

    def between(start=None, end=None) -> list[str]:
        response = client.agents.passages.search(tokyo.id, query="when", top_k=10, start_datetime=start,
                                                 end_datetime=end)
        return sorted(texts(response.results))

    # A date alone is the whole day, in the agent's zone.
    assert between(start="2024-05-01", end="2024-05-01") == ["late on the first"]
    assert between(start="2024-05-02", end="2024-05-02") == ["early on the second"]
    assert between(start="2024-05-02T00:00:00") == ["a week later", "early on the second"]
    assert between(end="2024-05-01T16:30:00+00:00") == ["early on the second", "late on the first"]
    [first] = client.agents.passages.search(tokyo.id, query="late on the first", top_k=1).results
    assert first.timestamp == "2024-05-01T23:30:00.000000+09:00"


def test_search_compares_only_passages_of_the_agents_current_model(client, agent, fake_openai):
    client.agents.passages.create(agent.id, text="embedded by the local model")
    client.agents.update(agent.id, embedding="openai/text-embedding-3-small")
    assert client.agents.passages.search(agent.id, query="embedded by the local model").count == 0
    client.agents.passages.create(agent.id, text="embedded remotely")
    assert texts(client.agents.passages.search(agent.id, query="embedded remotely").results) == ["embedded remotely"]
    assert len(client.agents.passages.list(agent.id)) == 2


def test_remote_embeddings_go_to_the_openai_compatible_endpoint(client, fake_openai):
    remote = client.agents.create(model=MODEL, embedding="openai/text-embedding-3-small")
    before = len(fake_openai.requests_with("input"))
    [passage] = client.agents.passages.create(remote.id, text="sent to the provider")
    assert len(passage.embedding) == 1536
    sent = fake_openai.requests_with("input")[before:]
    assert any(body["input"] == ["sent to the provider"] and body["model"] == "text-embedding-3-small"
               for body in sent)
    assert texts(client.agents.passages.search(remote.id, query="sent to the provider").results) == [
        "sent to the provider"
    ]


# --- limits, failures, bad input ------------------------------------------------------------------------------


def test_passage_over_the_token_limit_is_400_and_nothing_is_stored(client, agent):
    too_long = "memory " * 8200  # one token per word: over 8,192 tokens
    with pytest.raises(BadRequestError) as e:
        client.agents.passages.create(agent.id, text=too_long)
    assert "8192" in e.value.body["detail"]
    assert client.agents.passages.list(agent.id) == []
    # Just under the limit is fine (the local model reads its first 256 word-pieces).
    client.agents.passages.create(agent.id, text="memory " * 8000)
    assert len(client.agents.passages.list(agent.id)) == 1


# An embedding model the configured provider serves wrongly: its vectors are not of the config's size. (A dead
# endpoint of the tenant's own is refused when the agent is created: contract R20.)
WRONG_SIZE = {"embedding_endpoint_type": "openai", "embedding_model": "my-embedder", "embedding_dim": 100}


def test_embedding_failure_is_an_error_and_nothing_is_stored(client, fake_openai):
    broken = client.agents.create(
        model=MODEL, embedding_config={**WRONG_SIZE, "embedding_endpoint": fake_openai.base_url}
    )
    with pytest.raises(InternalServerError) as e:
        client.agents.passages.create(broken.id, text="this cannot be embedded")
    assert e.value.status_code == 502
    assert "returned 1536-dimensional vectors" in e.value.body["detail"]
    assert client.agents.passages.list(broken.id) == []
    with pytest.raises(InternalServerError):
        client.agents.passages.search(broken.id, query="anything")


@pytest.mark.parametrize(
    "params",
    [
        {"query": "x", "top_k": 0},
        {"query": "x", "top_k": -3},
        {"query": "x", "top_k": "many"},
        {"query": "x", "tag_match_mode": "some"},
        {"query": "x", "start_datetime": "yesterday"},
        {"query": "x", "end_datetime": "2024-13-45"},
        {"top_k": 3},
    ],
)
def test_bad_search_parameters_are_422(archival_server, agent, params):
    r = httpx.get(f"{archival_server.url}/v1/agents/{agent.id}/archival-memory/search", params=params, timeout=10)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": 5},
        {"text": "ok", "tags": "not-a-list"},
        {"text": "ok", "tags": ["x" * 513]},
        {"text": "ok", "created_at": 1700000000},
        {"text": "ok", "created_at": "not a date"},
        {"text": "ok", "created_at": "9999-12-31T23:59:59-23:59"},
        {"text": "nul \u0000 inside"},
    ],
)
def test_bad_insert_bodies_are_422_and_store_nothing(archival_server, client, agent, body):
    r = httpx.post(f"{archival_server.url}/v1/agents/{agent.id}/archival-memory", json=body, timeout=10)
    assert r.status_code == 422, r.text
    assert client.agents.passages.list(agent.id) == []


def test_empty_text_is_400(client, agent):
    with pytest.raises(BadRequestError):
        client.agents.passages.create(agent.id, text="  ")
    with pytest.raises(UnprocessableEntityError):
        client.agents.passages.list(agent.id, limit=0)


# --- archives -------------------------------------------------------------------------------------------------


def test_archive_lifecycle_attach_search_detach_delete(client, agent, archival_server):
    archive = client.archives.create(name="team handbook", description="shared facts")
    assert archive.embedding_config.handle == "local/all-minilm-l6-v2"
    assert client.archives.retrieve(archive.id).name == "team handbook"
    renamed = client.archives.update(archive.id, name="handbook")
    assert renamed.name == "handbook" and renamed.description == "shared facts"

    made = client.archives.passages.create_many(
        archive.id, passages=[{"text": "Expenses are filed by the 5th."}, {"text": "The office closes at 7 pm."}]
    )
    assert [p.archive_id for p in made] == [archive.id, archive.id]
    single = client.archives.passages.create(archive.id, text="Fridays are remote.", tags=["policy"])
    assert single.tags == ["policy"]

    assert client.agents.passages.search(agent.id, query="When does the office close?").count == 0
    client.agents.archives.attach(archive.id, agent_id=agent.id)
    client.agents.archives.attach(archive.id, agent_id=agent.id)  # twice is fine
    top = client.agents.passages.search(agent.id, query="When does the office close?", top_k=1).results
    assert texts(top) == ["The office closes at 7 pm."]
    assert archive.id in [a.id for a in client.archives.list(agent_id=agent.id)]

    client.archives.passages.delete(single.id, archive_id=archive.id)
    assert len(client.agents.passages.list(agent.id)) == 2
    client.agents.archives.detach(archive.id, agent_id=agent.id)
    assert client.agents.passages.search(agent.id, query="office").count == 0

    client.archives.delete(archive.id)
    with pytest.raises(NotFoundError):
        client.archives.retrieve(archive.id)
    assert db_rows(archival_server, "SELECT id FROM passages WHERE archive_id = :a", a=archive.id) == []


def test_archive_list_filters_and_pages(client):
    name = f"arch-{uuid.uuid4().hex[:8]}"
    made = [client.archives.create(name=name).id for _ in range(3)]
    listed = [a.id for a in client.archives.list(name=name)]
    assert listed == made[::-1]  # newest first
    assert [a.id for a in client.archives.list(name=name, order="asc", limit=1).items] == made[:1]
    assert [a.id for a in client.archives.list(name=name, order="asc", after=made[0]).items] == made[1:]


def test_archive_errors(client, agent):
    with pytest.raises(NotFoundError):
        client.archives.retrieve("archive-nope")
    with pytest.raises(NotFoundError):
        client.archives.passages.create("archive-nope", text="x")
    with pytest.raises(NotFoundError):
        client.agents.archives.attach("archive-nope", agent_id=agent.id)
    with pytest.raises(BadRequestError):
        client.archives.create(name="bad model", embedding="openai/nope")
    archive = client.archives.create(name="strict")
    with pytest.raises(NotFoundError):
        client.agents.archives.detach(archive.id, agent_id=agent.id)
    with pytest.raises(UnprocessableEntityError):
        client.archives.passages.create_many(archive.id, passages=[])


# --- search quality -----------------------------------------------------------------------------------------------


def test_local_model_finds_the_right_fact_in_the_top_3(client):
    """The labelled set: each paraphrased question's fact must be in the top 3 for at least 90% of them."""
    assert len(QUALITY["facts"]) >= 60 and len(QUALITY["questions"]) >= 25
    memory = client.agents.create(model=MODEL)
    archive = client.archives.create(name="quality set")
    client.archives.passages.create_many(archive.id, passages=[{"text": f} for f in QUALITY["facts"]])
    client.agents.archives.attach(archive.id, agent_id=memory.id)
    hits = 0
    misses = []
    for item in QUALITY["questions"]:
        top = texts(client.agents.passages.search(memory.id, query=item["question"], top_k=3).results)
        if QUALITY["facts"][item["answer"]] in top:
            hits += 1
        else:
            misses.append((item["question"], top))
    rate = hits / len(QUALITY["questions"])
    assert rate >= 0.9, f"top-3 hit rate {rate:.0%}; misses: {misses}"


def test_passages_inserted_one_by_one_are_found_by_paraphrase(client):
    memory = client.agents.create(model=MODEL)
    for fact in QUALITY["facts"][:20]:
        client.agents.passages.create(memory.id, text=fact)
    found = texts(client.agents.passages.search(memory.id, query="What breed is my pet dog?", top_k=3).results)
    assert QUALITY["facts"][2] in found


# --- pgvector --------------------------------------------------------------------------------------------------


def test_pgvector_database_stores_vectors_in_indexed_columns(archival_server, client, agent):
    if archival_server.backend != "pgvector":
        pytest.skip("only the pgvector backend has vector columns")
    [passage] = client.agents.passages.create(agent.id, text="indexed")
    [(filled,)] = db_rows(
        archival_server, "SELECT embedding_384 IS NOT NULL FROM passages WHERE id = :p", p=passage.id
    )
    assert filled is True
    indexes = {name for (name,) in db_rows(archival_server, "SELECT indexname FROM pg_indexes WHERE tablename = "
                                                             "'passages'")}
    assert {"ix_passages_embedding_384_hnsw", "ix_passages_embedding_1536_hnsw"} <= indexes


def test_machine_postgres_has_no_vector_columns(archival_server):
    if archival_server.backend != "postgres":
        pytest.skip("checks the PostgreSQL without pgvector")
    names = {n for (n,) in db_rows(archival_server, "SELECT column_name FROM information_schema.columns "
                                                    "WHERE table_name = 'passages'")}
    assert "embedding" in names and not any(n.startswith("embedding_") and n[10:].isdigit() for n in names)


# --- the agent loop's archival tools ------------------------------------------------------------------------


def _tool_call(tool: str, **args) -> list[dict]:
    """A user message that makes the scripted model call `tool` with `args`."""
    return [{"role": "user", "content": f"CALL {tool} {json.dumps(args)}"}]


def test_agent_tools_insert_and_search_archival_memory(client):
    agent = client.agents.create(model=MODEL, tools=["archival_memory_insert", "archival_memory_search"])
    response = client.agents.messages.create(
        agent.id, messages=_tool_call("archival_memory_insert", content="The user's cat is called Miso.",
                                      tags=["pets"])
    )
    returns = [m for m in response.messages if m.message_type == "tool_return_message"]
    assert [r.status for r in returns] == ["success"]
    [stored] = client.agents.passages.list(agent.id)
    assert stored.text == "The user's cat is called Miso." and stored.tags == ["pets"]

    response = client.agents.messages.create(
        agent.id, messages=_tool_call("archival_memory_search", query="What is my cat's name?", top_k=3)
    )
    [found] = [m for m in response.messages if m.message_type == "tool_return_message"]
    assert found.status == "success"
    assert "The user's cat is called Miso." in found.tool_return


def test_agent_tool_embedding_failure_is_an_error_tool_return_and_stores_nothing(client, fake_openai):
    agent = client.agents.create(
        model=MODEL,
        tools=["archival_memory_insert"],
        embedding_config={**WRONG_SIZE, "embedding_endpoint": fake_openai.base_url},
    )
    response = client.agents.messages.create(
        agent.id, messages=_tool_call("archival_memory_insert", content="lost to a broken provider")
    )
    [failed] = [m for m in response.messages if m.message_type == "tool_return_message"]
    assert failed.status == "error"
    assert "returned 1536-dimensional vectors" in failed.tool_return
    assert client.agents.passages.list(agent.id) == []
