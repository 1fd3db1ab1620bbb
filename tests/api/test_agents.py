"""Agents through the SDK: create, list, retrieve, modify, delete (contract 2)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from letta_client import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError

MODEL = "openai/gpt-4o-mini"


def uniq(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_create_default_agent_is_letta_v1_with_base_tools_and_one_system_message(client):
    agent = client.agents.create(model=MODEL)
    assert agent.agent_type == "letta_v1_agent"
    assert agent.id.startswith("agent-")
    assert {t.name for t in agent.tools} == {"conversation_search", "memory_insert", "memory_replace"}
    assert agent.tool_rules == []
    assert len(agent.message_ids) == 1
    assert agent.model == MODEL
    assert agent.llm_config.model == "gpt-4o-mini"
    assert agent.llm_config.context_window > 0
    assert agent.embedding == "local/all-minilm-l6-v2"
    assert agent.embedding_config.embedding_dim == 384
    assert agent.name  # a random name is given
    assert agent.timezone == "UTC"


def test_create_with_memory_blocks_renders_them_into_the_system_message(client, server):
    agent = client.agents.create(
        model=MODEL,
        memory_blocks=[
            {"label": "human", "value": "Name: Ada"},
            {"label": "persona", "value": "I am terse."},
        ],
    )
    assert {b.label: b.value for b in agent.memory.blocks} == {"human": "Name: Ada", "persona": "I am terse."}
    assert all(b.limit == 20_000 for b in agent.blocks)
    human = next(b for b in agent.blocks if b.label == "human")
    assert human.description  # default description filled in for human/persona
    messages = httpx.get(f"{server.url}/v1/agents/{agent.id}/messages", timeout=10)
    if messages.status_code == 200:  # the listing itself is tested in test_messages.py
        system = messages.json()[0]
        assert "Name: Ada" in system["content"] and "chars_limit=20000" in system["content"]


def test_create_memgpt_agent_gets_send_message_rules_and_boot_messages(client):
    agent = client.agents.create(model=MODEL, agent_type="memgpt_v2_agent")
    names = {t.name for t in agent.tools}
    assert {"send_message", "conversation_search", "memory_insert", "memory_replace"} <= names
    rules = {(r.tool_name, r.type) for r in agent.tool_rules}
    assert ("send_message", "exit_loop") in rules
    assert len(agent.message_ids) == 4  # system, boot call, its return, login event


def test_create_with_all_fields_keeps_them(client):
    name = uniq("full")
    agent = client.agents.create(
        name=name,
        model=MODEL,
        system="You are a test agent.",
        tags=["a", "b"],
        metadata={"k": [1, 2]},
        description="described",
        include_base_tools=False,
        tools=["archival_memory_search"],
        timezone="Europe/Paris",
    )
    got = client.agents.retrieve(agent.id, include=["agent.tags", "agent.tools"])
    assert got.name == name
    assert got.system == "You are a test agent."
    assert sorted(got.tags) == ["a", "b"]
    assert got.metadata == {"k": [1, 2]}
    assert got.description == "described"
    assert [t.name for t in got.tools] == ["archival_memory_search"]
    assert got.timezone == "Europe/Paris"


def test_create_with_llm_config_instead_of_handle(client, fake_openai):
    agent = client.agents.create(
        llm_config={
            "model": "my-model",
            "model_endpoint_type": "openai",
            "context_window": 4096,
            "model_endpoint": fake_openai.base_url + "/",  # the configured provider's base URL, normalised
        },
    )
    assert agent.llm_config.model == "my-model"
    assert agent.llm_config.context_window == 4096
    assert agent.llm_config.api_model_endpoint is None  # the operator's base URL is not shown (R20)


def test_context_window_limit_overrides_the_model_window(client):
    agent = client.agents.create(model=MODEL, context_window_limit=5000)
    assert agent.llm_config.context_window == 5000


def test_create_without_model_is_400(client):
    with pytest.raises(BadRequestError) as e:
        client.agents.create(name=uniq())
    assert "model" in str(e.value.body["detail"])


def test_create_with_unknown_model_is_404_and_creates_nothing(client):
    name = uniq("nomodel")
    with pytest.raises(NotFoundError):
        client.agents.create(name=name, model="openai/does-not-exist")
    assert list(client.agents.list(name=name)) == []


def test_create_with_malformed_handle_is_400(client):
    with pytest.raises(BadRequestError):
        client.agents.create(model="no-slash-here")


def test_create_with_unknown_embedding_is_400(client):
    with pytest.raises(BadRequestError):
        client.agents.create(model=MODEL, embedding="openai/nope-embedding")


def test_create_with_unknown_tool_name_is_400_and_creates_nothing(client):
    name = uniq("notool")
    with pytest.raises(BadRequestError) as e:
        client.agents.create(name=name, model=MODEL, tools=["no_such_tool"])
    assert "no_such_tool" in e.value.body["detail"]
    assert list(client.agents.list(name=name)) == []


def test_create_with_unknown_block_or_tool_id_is_404(client):
    with pytest.raises(NotFoundError):
        client.agents.create(model=MODEL, block_ids=[f"block-{uuid.uuid4()}"])
    with pytest.raises(NotFoundError):
        client.agents.create(model=MODEL, tool_ids=[f"tool-{uuid.uuid4()}"])


def test_create_with_two_blocks_of_one_label_is_409(client):
    block = client.blocks.create(label="human", value="x")
    with pytest.raises(ConflictError):
        client.agents.create(
            model=MODEL, memory_blocks=[{"label": "human", "value": "y"}], block_ids=[block.id]
        )


def test_create_with_block_over_limit_is_rejected_and_stores_nothing(client):
    name = uniq("overlimit")
    before = client.blocks.list(label_search="overlimit-block", limit=1000).items
    with pytest.raises(BadRequestError) as e:
        client.agents.create(
            name=name,
            model=MODEL,
            memory_blocks=[{"label": "overlimit-block", "value": "x" * 20_001}],
        )
    detail = e.value.body["detail"]
    assert "overlimit-block" in detail and "20001" in detail and "20000" in detail
    assert list(client.agents.list(name=name)) == []
    assert client.blocks.list(label_search="overlimit-block", limit=1000).items == before


def test_create_with_explicit_block_limit(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "notes", "value": "abc", "limit": 3}])
    assert agent.blocks[0].limit == 3
    with pytest.raises(BadRequestError):
        client.agents.create(model=MODEL, memory_blocks=[{"label": "notes", "value": "abcd", "limit": 3}])


def test_create_with_invalid_agent_type_is_422(client):
    with pytest.raises(UnprocessableEntityError):
        client.agents.create(model=MODEL, agent_type="nonsense_agent")


def test_create_with_invalid_timezone_is_400(client):
    with pytest.raises(BadRequestError):
        client.agents.create(model=MODEL, timezone="Mars/Olympus")


def test_retrieve_without_include_has_no_relationships_but_message_ids(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "x"}], tags=["t"])
    got = client.agents.retrieve(agent.id)
    assert got.blocks == [] and got.tools == [] and got.tags == []
    assert got.message_ids == agent.message_ids
    full = client.agents.retrieve(agent.id, include=["agent.blocks", "agent.tools", "agent.tags"])
    assert [b.label for b in full.blocks] == ["human"]
    assert [b.label for b in full.memory.blocks] == ["human"]
    assert len(full.tools) == 3
    assert full.tags == ["t"]


def test_retrieve_unknown_agent_is_404(client):
    with pytest.raises(NotFoundError) as e:
        client.agents.retrieve(f"agent-{uuid.uuid4()}")
    assert "not found" in e.value.body["detail"]


def test_retrieve_malformed_id_is_422(client):
    with pytest.raises(UnprocessableEntityError):
        client.agents.retrieve("agent-123")


def test_agent_of_another_organization_is_404(client, other_org_client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(NotFoundError):
        other_org_client.agents.retrieve(agent.id)
    with pytest.raises(NotFoundError):
        other_org_client.agents.update(agent.id, name="stolen")
    with pytest.raises(NotFoundError):
        other_org_client.agents.delete(agent.id)
    assert agent.id not in {a.id for a in other_org_client.agents.list()}
    assert client.agents.retrieve(agent.id).name == agent.name


def test_list_filters_by_name_and_query_text(client):
    name = uniq("Findable")
    agent = client.agents.create(model=MODEL, name=name)
    assert [a.id for a in client.agents.list(name=name)] == [agent.id]
    assert agent.id in [a.id for a in client.agents.list(query_text=name.lower()[4:])]


def test_list_filters_by_tags_any_and_all(client):
    tag_a, tag_b = uniq("ta"), uniq("tb")
    both = client.agents.create(model=MODEL, tags=[tag_a, tag_b])
    only_a = client.agents.create(model=MODEL, tags=[tag_a])
    any_ids = {a.id for a in client.agents.list(tags=[tag_a, tag_b])}
    all_ids = {a.id for a in client.agents.list(tags=[tag_a, tag_b], match_all_tags=True)}
    assert any_ids == {both.id, only_a.id}
    assert all_ids == {both.id}


def test_list_paginates_in_both_orders_without_gaps_or_repeats(client):
    tag = uniq("page")
    created = [client.agents.create(model=MODEL, tags=[tag]).id for _ in range(5)]
    desc = [a.id for a in client.agents.list(tags=[tag], limit=2)]
    asc = [a.id for a in client.agents.list(tags=[tag], limit=2, order="asc")]
    assert asc == created
    assert desc == list(reversed(created))
    first = client.agents.list(tags=[tag], limit=2, order="asc").items
    after = client.agents.list(tags=[tag], limit=2, order="asc", after=first[-1].id).items
    assert [a.id for a in after] == created[2:4]
    before = client.agents.list(tags=[tag], limit=10, order="desc", after=created[2]).items
    assert [a.id for a in before] == [created[1], created[0]]


def test_list_with_unknown_cursor_lists_from_the_start(client):
    tag = uniq("cur")
    ids = [client.agents.create(model=MODEL, tags=[tag]).id for _ in range(2)]
    page = client.agents.list(tags=[tag], order="asc", after=f"agent-{uuid.uuid4()}").items
    assert [a.id for a in page] == ids


def test_list_limit_zero_is_422_and_large_limit_is_served(client):
    with pytest.raises(UnprocessableEntityError):
        client.agents.list(limit=0)
    assert isinstance(client.agents.list(limit=10**6).items, list)


def test_list_with_include_loads_relationships(client):
    tag = uniq("inc")
    client.agents.create(model=MODEL, tags=[tag], memory_blocks=[{"label": "human", "value": "v"}])
    [got] = client.agents.list(tags=[tag], include=["agent.blocks"]).items
    assert [b.value for b in got.blocks] == ["v"]
    [bare] = client.agents.list(tags=[tag]).items
    assert bare.blocks == []


def test_update_changes_only_the_fields_sent(client):
    agent = client.agents.create(model=MODEL, name=uniq("upd"), description="d1", tags=["x"])
    updated = client.agents.update(agent.id, description="d2")
    assert updated.description == "d2"
    assert updated.name == agent.name
    assert updated.tags == ["x"]
    assert updated.system == agent.system


def test_update_tags_tools_and_blocks_replace_the_sets(client):
    agent = client.agents.create(model=MODEL, tags=["old"], memory_blocks=[{"label": "human", "value": "h"}])
    block = client.blocks.create(label="notes", value="n")
    search = next(iter(client.tools.list(name="archival_memory_search")))
    updated = client.agents.update(
        agent.id, tags=["new1", "new2"], tool_ids=[search.id], block_ids=[block.id]
    )
    assert sorted(updated.tags) == ["new1", "new2"]
    assert [t.name for t in updated.tools] == ["archival_memory_search"]
    assert [b.label for b in updated.blocks] == ["notes"]


def test_update_with_unknown_tool_id_is_404_and_changes_nothing(client):
    agent = client.agents.create(model=MODEL, name=uniq("keep"))
    with pytest.raises(NotFoundError):
        client.agents.update(agent.id, name="changed", tool_ids=[f"tool-{uuid.uuid4()}"])
    got = client.agents.retrieve(agent.id, include=["agent.tools"])
    assert got.name == agent.name
    assert len(got.tools) == 3


def test_update_model_resolves_the_handle(client):
    agent = client.agents.create(model=MODEL)
    updated = client.agents.update(agent.id, model="openai/gpt-4o")
    assert updated.llm_config.model == "gpt-4o"
    with pytest.raises(NotFoundError):
        client.agents.update(agent.id, model="openai/missing")
    assert client.agents.retrieve(agent.id).llm_config.model == "gpt-4o"


def test_update_message_ids_accepts_only_the_window_shape(client):
    agent = client.agents.create(model=MODEL, agent_type="memgpt_v2_agent")
    system_id, *rest = agent.message_ids
    kept = client.agents.update(agent.id, message_ids=[system_id, *rest[1:]])
    assert kept.message_ids == [system_id, *rest[1:]]
    with pytest.raises(UnprocessableEntityError):
        client.agents.update(agent.id, message_ids=[system_id, rest[0]])  # not newest-ending
    with pytest.raises(UnprocessableEntityError):
        client.agents.update(agent.id, message_ids=[rest[0]])  # system message missing
    assert client.agents.retrieve(agent.id).message_ids == kept.message_ids


def test_update_with_wrong_type_is_422_and_changes_nothing(client, server):
    agent = client.agents.create(model=MODEL, name=uniq("typed"))
    r = httpx.patch(f"{server.url}/v1/agents/{agent.id}", json={"name": 5, "description": "new"}, timeout=10)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str) and "name" in r.json()["detail"]
    got = client.agents.retrieve(agent.id)
    assert got.name == agent.name and got.description is None


def test_delete_agent_then_404_and_its_blocks_stay(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "stays"}])
    block_id = agent.blocks[0].id
    client.agents.delete(agent.id)
    with pytest.raises(NotFoundError):
        client.agents.retrieve(agent.id)
    with pytest.raises(NotFoundError):
        client.agents.delete(agent.id)
    assert client.blocks.retrieve(block_id).value == "stays"


def test_slashless_collection_redirects(server):
    r = httpx.get(f"{server.url}/v1/agents", timeout=10)
    assert r.status_code == 307
    assert r.headers["location"].endswith("/v1/agents/")
