def test_smoke(client):
    assert client.health().status == "ok"
    agent = client.agents.create(model="openai/gpt-4o-mini", memory_blocks=[{"label": "human", "value": "Sam"}])
    assert len(agent.message_ids) == 1
    response = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "hello there"}])
    assert [m.message_type for m in response.messages] == ["assistant_message"]
    assert response.messages[0].content == "ack hello there"
    assert response.stop_reason.stop_reason == "end_turn"
    history = client.agents.messages.list(agent.id).items
    assert [m.message_type for m in history] == ["system_message", "user_message", "assistant_message"]
    assert len(client.agents.retrieve(agent.id).message_ids) == 3
