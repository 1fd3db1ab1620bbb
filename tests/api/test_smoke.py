def test_smoke(client):
    assert client.health().status == "ok"
    models = client.models.list()
    assert any(m.handle == "openai/gpt-4o-mini" for m in models)
    agent = client.agents.create(
        model="openai/gpt-4o-mini", memory_blocks=[{"label": "human", "value": "Sam"}]
    )
    assert len(agent.message_ids) == 1
    assert {t.name for t in agent.tools} == {"conversation_search", "memory_insert", "memory_replace"}
    got = client.agents.retrieve(agent.id)
    assert got.id == agent.id
