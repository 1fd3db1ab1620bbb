"""Blocks through the SDK: standalone CRUD and the agent's core memory (contract 3)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from letta_client import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError

MODEL = "openai/gpt-4o-mini"


def uniq(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def system_text(server, agent_id: str) -> str:
    """The compiled system message, read straight from the database the server uses."""
    import asyncio

    import sqlalchemy as sa

    from recalld.settings import Settings
    from recalld.store.router import StoreRouter

    async def read() -> str:
        settings = Settings(
            _env_file=None,
            **{
                "RECALLD_DIR": server.env["RECALLD_DIR"],
                "RECALLD_PG_URI": server.env.get("RECALLD_PG_URI"),
            },
        )
        router = StoreRouter(settings)
        try:
            async with router.read("") as conn:
                row = (
                    await conn.execute(
                        sa.text(
                            "SELECT m.content FROM messages m JOIN agents a ON a.system_message_id = m.id "
                            "AND a.organization_id = m.organization_id WHERE a.id = :a"
                        ),
                        {"a": agent_id},
                    )
                ).first()
        finally:
            await router.dispose()
        content = row[0]
        if isinstance(content, str):
            import json

            content = json.loads(content)
        return content[0]["text"]

    return asyncio.run(read())


def test_create_block_defaults(client):
    block = client.blocks.create(label=uniq("lbl"), value="hello")
    assert block.id.startswith("block-")
    assert block.limit == 20_000
    assert block.read_only is False
    assert block.metadata == {}
    assert client.blocks.retrieve(block.id).value == "hello"


def test_create_block_without_label_is_422(server):
    r = httpx.post(f"{server.url}/v1/blocks/", json={"value": "x"}, timeout=10)
    assert r.status_code == 422
    assert "label" in r.json()["detail"]


def test_create_block_over_limit_names_block_length_and_limit(client):
    label = uniq("big")
    with pytest.raises(BadRequestError) as e:
        client.blocks.create(label=label, value="y" * 11, limit=10)
    detail = e.value.body["detail"]
    assert label in detail and "11" in detail and "10" in detail
    assert client.blocks.list(label=label).items == []


def test_create_block_with_default_limit_rejects_over_20000(client):
    with pytest.raises(BadRequestError):
        client.blocks.create(label=uniq(), value="z" * 20_001)
    assert client.blocks.create(label=uniq(), value="z" * 20_000).limit == 20_000


def test_block_value_drops_nul_bytes(client):
    block = client.blocks.create(label=uniq(), value="a\x00b")
    assert client.blocks.retrieve(block.id).value == "ab"


def test_update_block_changes_only_fields_sent(client):
    block = client.blocks.create(label=uniq(), value="v1", description="d1")
    updated = client.blocks.update(block.id, value="v2")
    assert updated.value == "v2" and updated.description == "d1"
    assert client.blocks.retrieve(block.id).value == "v2"


def test_update_block_over_limit_keeps_old_value(client):
    block = client.blocks.create(label=uniq(), value="small", limit=10)
    with pytest.raises(BadRequestError):
        client.blocks.update(block.id, value="x" * 11)
    with pytest.raises(BadRequestError):
        client.blocks.update(block.id, limit=3)  # lowering below the current length
    got = client.blocks.retrieve(block.id)
    assert got.value == "small" and got.limit == 10


def test_update_block_with_every_letta_field_applies_each(client):
    """Every field of Letta's BlockUpdate, sent at once, is applied with its meaning, none dropped."""
    block = client.blocks.create(label=uniq(), value="v1", tags=["old"], project_id="p1")
    updated = client.blocks.update(
        block.id,
        label="0",
        value="",
        limit=5,
        description="",
        read_only=False,
        metadata={},
        tags=[],
        hidden=None,
        is_template=False,
        template_name="",
        project_id="",
        template_id="",
        base_template_id="",
        deployment_id="",
        entity_id="",
        preserve_on_migration=None,
    )
    got = client.blocks.retrieve(block.id)
    for view in (updated, got):
        assert (view.label, view.value, view.limit, view.tags, view.project_id) == ("0", "", 5, [], "")
        assert view.template_name == "" and view.entity_id == "" and view.is_template is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("read_only", None),
        ("is_template", None),
        ("project_id", "p" * 129),
        ("template_id", "t" * 129),
        ("template_name", "n" * 513),
    ],
    ids=["null-read_only", "null-is_template", "long-project_id", "long-template_id", "long-template_name"],
)
def test_update_block_with_unstorable_field_is_422_naming_it(client, server, field, value):
    """A null where Letta wants a boolean, or a value wider than its column, is refused, never a 5xx."""
    block = client.blocks.create(label=uniq(), value="kept", project_id="p1", template_name="n1")
    r = httpx.patch(f"{server.url}/v1/blocks/{block.id}", json={field: value, "value": "changed"}, timeout=10)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    got = client.blocks.retrieve(block.id)
    assert (got.value, got.project_id, got.template_name, got.read_only) == ("kept", "p1", "n1", False)


def test_create_block_with_too_long_project_id_is_422(server):
    r = httpx.post(f"{server.url}/v1/blocks/", json={"label": uniq(), "project_id": "p" * 129}, timeout=10)
    assert r.status_code == 422 and "project_id" in r.json()["detail"]


def test_update_block_recompiles_every_attached_agent(client, server):
    block = client.blocks.create(label=uniq("shared"), value="before")
    a1 = client.agents.create(model=MODEL, block_ids=[block.id])
    a2 = client.agents.create(model=MODEL, block_ids=[block.id])
    client.blocks.update(block.id, value="after-edit")
    for agent in (a1, a2):
        text = system_text(server, agent.id)
        assert "after-edit" in text and "before" not in text


def test_delete_block_then_404(client):
    block = client.blocks.create(label=uniq(), value="v")
    client.blocks.delete(block.id)
    with pytest.raises(NotFoundError):
        client.blocks.retrieve(block.id)
    with pytest.raises(NotFoundError):
        client.blocks.delete(block.id)


def test_delete_block_detaches_it_from_agents(client):
    block = client.blocks.create(label=uniq(), value="v")
    agent = client.agents.create(model=MODEL, block_ids=[block.id])
    client.blocks.delete(block.id)
    assert client.agents.retrieve(agent.id, include=["agent.blocks"]).blocks == []


def test_list_blocks_includes_agents_blocks_and_filters(client):
    label = uniq("agentblock")
    client.agents.create(model=MODEL, memory_blocks=[{"label": label, "value": "find me please"}])
    assert [b.label for b in client.blocks.list(label=label)] == [label]
    assert label in [b.label for b in client.blocks.list(value_search="FIND ME PLEASE", limit=1000)]
    assert label in [b.label for b in client.blocks.list(label_search=label[5:], limit=1000)]


def test_list_blocks_by_tags(client):
    tag = uniq("tag")
    tagged = client.blocks.create(label=uniq(), value="v", tags=[tag, "other"])
    client.blocks.create(label=uniq(), value="v", tags=["other"])
    assert [b.id for b in client.blocks.list(tags=[tag])] == [tagged.id]
    assert [b.id for b in client.blocks.list(tags=[tag, "other"], match_all_tags=True)] == [tagged.id]


def test_list_blocks_by_connected_agent_count(client):
    label = uniq("conn")
    lonely = client.blocks.create(label=label, value="v")
    shared = client.blocks.create(label=label, value="v")
    client.agents.create(model=MODEL, block_ids=[shared.id])
    client.agents.create(model=MODEL, block_ids=[shared.id])
    assert [b.id for b in client.blocks.list(label=label, connected_to_agents_count_gt=1)] == [shared.id]
    assert [b.id for b in client.blocks.list(label=label, connected_to_agents_count_eq=[0])] == [lonely.id]


def test_list_blocks_paginates_oldest_first(client):
    label = uniq("pg")
    ids = [client.blocks.create(label=label, value=str(i)).id for i in range(5)]
    assert [b.id for b in client.blocks.list(label=label, limit=2)] == ids
    assert [b.id for b in client.blocks.list(label=label, limit=2, order="desc")] == list(reversed(ids))


def test_block_of_another_organization_is_404(client, other_org_client):
    block = client.blocks.create(label=uniq(), value="mine")
    with pytest.raises(NotFoundError):
        other_org_client.blocks.retrieve(block.id)
    with pytest.raises(NotFoundError):
        other_org_client.blocks.update(block.id, value="theirs")
    with pytest.raises(NotFoundError):
        other_org_client.agents.create(model=MODEL, block_ids=[block.id])
    assert client.blocks.retrieve(block.id).value == "mine"


def test_agents_of_block(client):
    block = client.blocks.create(label=uniq(), value="v")
    agent = client.agents.create(model=MODEL, block_ids=[block.id])
    assert [a.id for a in client.blocks.agents.list(block.id)] == [agent.id]


# --- core memory ------------------------------------------------------------------------------------------


def test_agent_block_retrieve_and_update_by_label(client, server):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "Name: Bo"}])
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "Name: Bo"
    updated = client.agents.blocks.update("human", agent_id=agent.id, value="Name: Bo\nLikes: tea")
    assert updated.value == "Name: Bo\nLikes: tea"
    assert "Likes: tea" in system_text(server, agent.id)


def test_agent_block_update_over_limit_keeps_old_value(client, server):
    agent = client.agents.create(
        model=MODEL, memory_blocks=[{"label": "human", "value": "short", "limit": 8}]
    )
    with pytest.raises(BadRequestError) as e:
        client.agents.blocks.update("human", agent_id=agent.id, value="far too long")
    assert "human" in e.value.body["detail"]
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "short"
    assert "far too long" not in system_text(server, agent.id)


def test_agent_block_unknown_label_is_404(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(NotFoundError) as e:
        client.agents.blocks.retrieve("nope", agent_id=agent.id)
    assert "nope" in e.value.body["detail"]


def test_agent_block_rename_to_taken_label_is_409(client):
    agent = client.agents.create(
        model=MODEL, memory_blocks=[{"label": "human", "value": "h"}, {"label": "persona", "value": "p"}]
    )
    with pytest.raises(ConflictError):
        client.agents.blocks.update("human", agent_id=agent.id, label="persona")
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "h"


def test_agent_blocks_list(client):
    agent = client.agents.create(
        model=MODEL, memory_blocks=[{"label": "human", "value": "h"}, {"label": "persona", "value": "p"}]
    )
    labels = {b.label for b in client.agents.blocks.list(agent.id)}
    assert labels == {"human", "persona"}


def test_attach_and_detach_block(client, server):
    agent = client.agents.create(model=MODEL)
    block = client.blocks.create(label=uniq("att"), value="attached-value")
    state = client.agents.blocks.attach(block.id, agent_id=agent.id)
    assert block.id in [b.id for b in state.blocks]
    assert "attached-value" in system_text(server, agent.id)
    again = client.agents.blocks.attach(block.id, agent_id=agent.id)  # idempotent
    assert [b.id for b in again.blocks].count(block.id) == 1
    detached = client.agents.blocks.detach(block.id, agent_id=agent.id)
    assert block.id not in [b.id for b in detached.blocks]
    assert "attached-value" not in system_text(server, agent.id)
    with pytest.raises(NotFoundError):
        client.agents.blocks.detach(block.id, agent_id=agent.id)


def test_attach_block_with_taken_label_is_409(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "a"}])
    other = client.blocks.create(label="human", value="b")
    with pytest.raises(ConflictError):
        client.agents.blocks.attach(other.id, agent_id=agent.id)
    assert [b.value for b in client.agents.retrieve(agent.id, include=["agent.blocks"]).blocks] == ["a"]


def test_attach_unknown_block_is_404(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(NotFoundError):
        client.agents.blocks.attach(f"block-{uuid.uuid4()}", agent_id=agent.id)
    with pytest.raises(UnprocessableEntityError):
        client.agents.blocks.attach("block-bad", agent_id=agent.id)
