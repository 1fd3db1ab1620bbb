"""Agent turns through the SDK: replies, memory tools, heartbeats, limits, provider failures, history
paging, compaction, concurrency and idempotency (contract 4, 8; rules R8–R10, R13, R14)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid

import httpx
import pytest
from letta_client import APIStatusError, ConflictError, Letta, NotFoundError, UnprocessableEntityError

MODEL = "openai/gpt-4o-mini"


def user(text: str, **extra) -> dict:
    return {"role": "user", "content": text, **extra}


def call(tool: str, **args) -> str:
    return f"CALL {tool} {json.dumps(args)}"


def history(client, agent_id: str) -> list:
    return list(client.agents.messages.list(agent_id, order="asc", limit=1000))


def test_plain_reply_is_one_assistant_message_with_usage(client):
    agent = client.agents.create(model=MODEL)
    response = client.agents.messages.create(agent.id, messages=[user("hello")])
    assert [(m.message_type, m.content) for m in response.messages] == [("assistant_message", "ack hello")]
    assert response.stop_reason.stop_reason == "end_turn"
    assert response.usage.step_count == 1
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.messages[0].run_id.startswith("run-")
    assert response.messages[0].step_id.startswith("step-")


def test_input_sugar_is_a_user_message(client):
    agent = client.agents.create(model=MODEL)
    response = client.agents.messages.create(agent.id, input="via input")
    assert response.messages[0].content == "ack via input"
    assert [m.content for m in history(client, agent.id) if m.message_type == "user_message"] == ["via input"]


def test_memory_tool_turn_changes_core_memory_and_prompt(client, fake_openai):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "Name: Sam"}])
    response = client.agents.messages.create(
        agent.id, messages=[user(call("memory_replace", label="human", old_string="Sam", new_string="Samuel"))]
    )
    types = [m.message_type for m in response.messages]
    assert types == ["tool_call_message", "tool_return_message", "assistant_message"]
    call_msg, ret, reply = response.messages
    assert call_msg.tool_call.name == "memory_replace"
    assert ret.status == "success" and ret.tool_call_id == call_msg.tool_call.tool_call_id
    assert reply.content == "done memory_replace"
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "Name: Samuel"
    assert response.usage.step_count == 2
    # The next model call saw the edited memory in its system prompt.
    assert "Name: Samuel" in fake_openai.requests[-1]["messages"][0]["content"]
    listed = [m.message_type for m in history(client, agent.id)]
    assert listed == ["system_message", "user_message", "tool_call_message", "tool_return_message", "assistant_message"]


def test_memory_edit_over_the_limit_is_an_error_return_and_keeps_the_block(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "short", "limit": 10}])
    response = client.agents.messages.create(
        agent.id, messages=[user(call("memory_insert", label="human", new_string="far too long for it"))]
    )
    ret = next(m for m in response.messages if m.message_type == "tool_return_message")
    assert ret.status == "error"
    assert "limit" in ret.tool_return
    assert response.stop_reason.stop_reason == "end_turn"
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "short"


def test_tool_with_bad_arguments_is_an_error_return_not_a_crash(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "x"}])
    response = client.agents.messages.create(agent.id, messages=[user(call("memory_replace", label="human"))])
    ret = next(m for m in response.messages if m.message_type == "tool_return_message")
    assert ret.status == "error" and "missing required" in ret.tool_return
    assert response.messages[-1].content == "done memory_replace"


def test_custom_tool_runs_and_its_exception_becomes_an_error_return(client):
    suffix = uuid.uuid4().hex[:6]
    ok = client.tools.create(
        source_code=f'''
def add_{suffix}(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: first
        b: second
    """
    print("adding")
    return a + b
'''
    )
    boom = client.tools.create(
        source_code=f'''
def boom_{suffix}(x: str) -> str:
    """Always fails.

    Args:
        x: anything
    """
    raise ValueError("kaboom " + x)
'''
    )
    agent = client.agents.create(model=MODEL, tool_ids=[ok.id, boom.id])
    good = client.agents.messages.create(agent.id, messages=[user(call(f"add_{suffix}", a=2, b=3))])
    ret = next(m for m in good.messages if m.message_type == "tool_return_message")
    assert ret.status == "success" and ret.tool_return == "5" and ret.stdout == ["adding\n"]
    bad = client.agents.messages.create(agent.id, messages=[user(call(f"boom_{suffix}", x="now"))])
    ret = next(m for m in bad.messages if m.message_type == "tool_return_message")
    assert ret.status == "error" and "kaboom now" in ret.tool_return
    assert len(ret.stderr) == 1 and "ValueError: kaboom now" in ret.stderr[0]
    assert bad.stop_reason.stop_reason == "end_turn"


def test_tool_output_is_a_list_of_strings_in_history_and_streams(client):
    name = f"printer_{uuid.uuid4().hex[:6]}"
    tool = client.tools.create(
        source_code=f'def {name}() -> str:\n    """Print."""\n    print("to stdout")\n    return "done"\n'
    )
    agent = client.agents.create(model=MODEL, tool_ids=[tool.id])
    streamed = list(client.agents.messages.stream(agent.id, messages=[user(call(name))]))
    [ret] = [m for m in streamed if getattr(m, "message_type", None) == "tool_return_message"]
    assert ret.stdout == ["to stdout\n"] and ret.stderr is None
    assert ret.tool_returns[0].stdout == ["to stdout\n"]
    [listed] = [m for m in history(client, agent.id) if m.message_type == "tool_return_message"]
    assert listed.stdout == ["to stdout\n"] and listed.tool_returns[0].stdout == ["to stdout\n"]


def test_step_limit_stops_with_max_steps(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "x"}])
    response = client.agents.messages.create(
        agent.id, messages=[user(call("memory_insert", label="human", new_string="y"))], max_steps=1
    )
    assert response.stop_reason.stop_reason == "max_steps"
    assert response.usage.step_count == 1
    assert [m.message_type for m in response.messages] == ["tool_call_message", "tool_return_message"]


def test_memgpt_heartbeat_runs_another_step(client):
    # Without base rules the continue_loop rule on memory_insert does not apply: only the heartbeat continues.
    agent = client.agents.create(
        model=MODEL,
        agent_type="memgpt_v2_agent",
        include_base_tool_rules=False,
        memory_blocks=[{"label": "human", "value": "Name: Ann"}],
    )
    response = client.agents.messages.create(
        agent.id,
        messages=[user(call("memory_insert", label="human", new_string="Likes: tea", request_heartbeat=True))],
    )
    assert response.usage.step_count == 2
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "Name: Ann\nLikes: tea"
    users = [m.content for m in history(client, agent.id) if m.message_type == "user_message"]
    heartbeat = json.loads(users[-1])
    assert heartbeat["type"] == "heartbeat"
    assert "request_heartbeat=true" in heartbeat["reason"]
    # The model's plain text is its inner monologue on memgpt agents; no tool call ends the turn.
    assert response.messages[-1].message_type == "reasoning_message"
    assert response.stop_reason.stop_reason == "no_tool_call"


def test_memgpt_send_message_is_the_assistant_message(client):
    agent = client.agents.create(model=MODEL, agent_type="memgpt_v2_agent")
    response = client.agents.messages.create(agent.id, messages=[user(call("send_message", message="hi there"))])
    assert [(m.message_type, getattr(m, "content", None)) for m in response.messages] == [
        ("assistant_message", "hi there")
    ]
    assert response.stop_reason.stop_reason == "end_turn"


def test_memgpt_tools_carry_request_heartbeat(client, fake_openai):
    agent = client.agents.create(model=MODEL, agent_type="memgpt_v2_agent")
    client.agents.messages.create(agent.id, messages=[user("hi")])
    body = fake_openai.requests[-1]
    assert body["tool_choice"] == "required"
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in body["tools"]}
    assert "request_heartbeat" in schemas["memory_insert"]["properties"]
    assert "request_heartbeat" not in schemas["send_message"]["properties"]


def test_provider_500_is_502_with_its_message_and_the_run_fails(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(APIStatusError) as e:
        client.agents.messages.create(agent.id, messages=[user("FAIL 500")])
    assert e.value.status_code == 502
    assert "scripted failure 500" in e.value.body["detail"] and "openai" in e.value.body["detail"]
    [run] = client.runs.list(agent_id=agent.id).items
    assert run.status == "failed" and run.stop_reason == "llm_api_error"
    assert client.agents.retrieve(agent.id).last_stop_reason == "llm_api_error"


def test_a_failure_after_a_committed_step_tells_the_sdk_not_to_retry_it(server):
    # The SDK retries a 5xx unless told not to; a blind retry here would run the committed tool step again
    # (contract R9). With x-should-retry: false it gives up after one attempt and the step ran once.
    retrying = Letta(base_url=server.url, max_retries=2, timeout=30)
    agent = retrying.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "Name: Sam"}])
    script = call("memory_insert", label="human", new_string="Likes: chess") + " THEN FAIL 500"
    with pytest.raises(APIStatusError) as e:
        retrying.agents.messages.create(agent.id, messages=[user(script)])
    assert e.value.status_code == 502 and e.value.response.headers["x-should-retry"] == "false"
    assert retrying.agents.blocks.retrieve("human", agent_id=agent.id).value.count("Likes: chess") == 1
    assert [m.content for m in history(retrying, agent.id) if m.message_type == "user_message"] == [script]


def test_an_internal_error_after_a_committed_step_is_not_retried_either(server):
    if server.backend != "postgres":
        pytest.skip("the failure is a PostgreSQL trigger")
    retrying = Letta(base_url=server.url, max_retries=2, timeout=30)
    agent = retrying.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "Name: Sam"}])
    # The database refuses this agent's second step: the first step (the tool call) is committed, then the
    # turn fails with an error of no known kind, a 500.
    function, trigger = f"fail_{uuid.uuid4().hex[:8]}", f"second_step_{uuid.uuid4().hex[:8]}"
    _psql(server, f"""
        CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.agent_id = '{agent.id}' AND EXISTS (SELECT 1 FROM steps WHERE agent_id = NEW.agent_id) THEN
            RAISE EXCEPTION 'injected failure';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER {trigger} BEFORE INSERT ON steps FOR EACH ROW EXECUTE FUNCTION {function}();""")
    try:
        with pytest.raises(APIStatusError) as e:
            retrying.agents.messages.create(
                agent.id, messages=[user(call("memory_insert", label="human", new_string="Likes: go"))]
            )
    finally:
        _psql(server, f"DROP TRIGGER {trigger} ON steps; DROP FUNCTION {function}();")
    assert e.value.status_code == 500 and e.value.response.headers["x-should-retry"] == "false"
    assert e.value.body == {"detail": "An unknown error occurred"}  # nothing of the database's error leaks
    assert retrying.agents.blocks.retrieve("human", agent_id=agent.id).value.count("Likes: go") == 1


def _psql(server, sql: str) -> None:  # noqa: ANN001
    subprocess.run(["psql", server.env["RECALLD_PG_URI"], "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True)


def test_a_failure_before_any_step_committed_may_be_retried(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(APIStatusError) as e:
        client.agents.messages.create(agent.id, messages=[user("FAIL 503")])
    assert e.value.status_code == 502 and "x-should-retry" not in e.value.response.headers


def test_provider_429_is_429(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(APIStatusError) as e:
        client.agents.messages.create(agent.id, messages=[user("FAIL 429")])
    assert e.value.status_code == 429


def test_provider_timeout_is_504(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(APIStatusError) as e:
        client.agents.messages.create(agent.id, messages=[user("SLOW 5000")])
    assert e.value.status_code == 504


def test_failed_turn_stores_no_half_step_and_the_agent_still_works(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(APIStatusError):
        client.agents.messages.create(agent.id, messages=[user("FAIL 400")])
    assert [m.message_type for m in history(client, agent.id)] == ["system_message"]
    ok = client.agents.messages.create(agent.id, messages=[user("again")])
    assert ok.messages[0].content == "ack again"


def test_send_to_unknown_agent_is_404(client):
    with pytest.raises(NotFoundError):
        client.agents.messages.create(f"agent-{uuid.uuid4()}", messages=[user("x")])


def test_empty_messages_and_both_inputs_are_422(client, server):
    agent = client.agents.create(model=MODEL)
    url = f"{server.url}/v1/agents/{agent.id}/messages"
    assert httpx.post(url, json={"messages": []}, timeout=10).status_code == 422
    assert httpx.post(url, json={"messages": [user("a")], "input": "b"}, timeout=10).status_code == 422
    assert httpx.post(url, json={}, timeout=10).status_code == 422
    r = httpx.post(url, json={"messages": [user("a")], "stream_tokens": True}, timeout=10)
    assert r.status_code == 422
    assert [m.message_type for m in history(client, agent.id)] == ["system_message"]


def test_streaming_without_tokens_sends_whole_messages_then_stop_usage_done(client, server):
    agent = client.agents.create(model=MODEL)
    with httpx.stream(
        "POST", f"{server.url}/v1/agents/{agent.id}/messages/stream", json={"messages": [user("stream me")]}, timeout=30
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    payloads = [line[len("data: ") :] for line in lines if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    assert [e["message_type"] for e in events] == ["ping", "assistant_message", "stop_reason", "usage_statistics"]
    assert events[1]["content"] == "ack stream me"
    assert events[0]["run_id"] == events[1]["run_id"]


def test_token_streaming_fragments_concatenate_to_the_stored_message(client):
    agent = client.agents.create(model=MODEL)
    chunks = list(client.agents.messages.stream(agent.id, messages=[user("a b c d e f g")], stream_tokens=True))
    kinds = [c.message_type for c in chunks]
    assert kinds[0] == "ping" and kinds[-2:] == ["stop_reason", "usage_statistics"]
    fragments = [c for c in chunks if c.message_type == "assistant_message"]
    assert len(fragments) > 1
    assert len({f.id for f in fragments}) == 1 and len({f.otid for f in fragments}) == 1
    stored = [m for m in history(client, agent.id) if m.message_type == "assistant_message"][-1]
    assert "".join(f.content for f in fragments) == stored.content == "ack a b c d e f g"
    assert fragments[0].id == stored.id


def test_token_streaming_a_tool_turn(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "x"}])
    chunks = list(
        client.agents.messages.stream(
            agent.id, messages=[user(call("memory_insert", label="human", new_string="y"))], stream_tokens=True
        )
    )
    kinds = [c.message_type for c in chunks]
    assert "tool_call_message" in kinds and "tool_return_message" in kinds
    assert kinds.index("tool_return_message") > kinds.index("tool_call_message")
    args = "".join(c.tool_call.arguments or "" for c in chunks if c.message_type == "tool_call_message")
    assert json.loads(args) == {"label": "human", "new_string": "y"}
    assert kinds[-2:] == ["stop_reason", "usage_statistics"]


def test_streaming_provider_error_ends_with_error_event(client, server):
    agent = client.agents.create(model=MODEL)
    with httpx.stream(
        "POST", f"{server.url}/v1/agents/{agent.id}/messages/stream", json={"messages": [user("FAIL 500")]}, timeout=30
    ) as r:
        assert r.status_code == 200
        text = r.read().decode()
    assert '"stop_reason":"llm_api_error"' in text
    assert "event: error" in text and "scripted failure 500" in text
    assert text.rstrip().endswith("data: [DONE]")


def test_streaming_to_unknown_agent_is_a_plain_404(server):
    r = httpx.post(
        f"{server.url}/v1/agents/agent-{uuid.uuid4()}/messages/stream", json={"messages": [user("x")]}, timeout=10
    )
    assert r.status_code == 404 and "not found" in r.json()["detail"]


def test_async_send_returns_a_run_that_completes(client):
    agent = client.agents.create(model=MODEL)
    run = client.agents.messages.create_async(agent.id, messages=[user("later")])
    assert run.status in ("created", "running", "completed")
    deadline = time.monotonic() + 20
    while client.runs.retrieve(run.id).status not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = client.runs.retrieve(run.id)
    assert done.status == "completed" and done.stop_reason == "end_turn"
    messages = list(client.runs.messages.list(run.id))
    assert [(m.message_type, m.content) for m in messages] == [
        ("user_message", "later"),
        ("assistant_message", "ack later"),
    ]
    assert client.runs.usage.retrieve(run.id).total_tokens > 0
    steps = list(client.runs.steps.list(run.id))
    assert len(steps) == 1 and steps[0].run_id == run.id


def test_history_pages_over_two_thousand_messages(client):
    seq = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(2000)]
    agent = client.agents.create(model=MODEL, initial_message_sequence=seq)
    seen = [m.content for m in client.agents.messages.list(agent.id, order="asc", limit=50)]
    assert seen[1:] == [f"m{i}" for i in range(2000)] and len(seen) == 2001
    newest = client.agents.messages.list(agent.id, limit=3).items
    assert [m.content for m in newest] == ["m1997", "m1998", "m1999"]
    deep = client.agents.messages.list(agent.id, limit=2).items
    older = client.agents.messages.list(agent.id, limit=2, before=deep[0].id).items
    assert [m.content for m in older] == ["m1996", "m1997"]
    first = client.agents.messages.list(agent.id, order="asc", limit=2).items
    page = client.agents.messages.list(agent.id, order="asc", limit=2, after=first[-1].id).items
    assert [m.content for m in page] == ["m1", "m2"]
    newest_after = client.agents.messages.list(agent.id, order="desc", limit=2, after=first[-1].id).items
    assert [m.content for m in newest_after] == ["m1998", "m1999"]


def test_history_unknown_cursor_is_404(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(NotFoundError):
        client.agents.messages.list(agent.id, after=f"message-{uuid.uuid4()}")


def test_history_filter_by_message_type(client):
    agent = client.agents.create(model=MODEL)
    client.agents.messages.create(agent.id, messages=[user("one")])
    only = client.agents.messages.list(agent.id, include_return_message_types=["user_message"]).items
    assert [m.content for m in only] == ["one"]


def test_long_history_is_compacted_and_the_turn_succeeds(client):
    agent = client.agents.create(
        model=MODEL, context_window_limit=3000, memory_blocks=[{"label": "human", "value": "Name: Kim"}]
    )
    filler = "lorem ipsum dolor sit amet " * 40
    for i in range(12):
        response = client.agents.messages.create(agent.id, messages=[user(f"turn {i} {filler}")])
        assert response.stop_reason.stop_reason == "end_turn"
    state = client.agents.retrieve(agent.id)
    all_messages = history(client, agent.id)
    assert len(all_messages) > len(state.message_ids)  # older messages left the context...
    assert sum(1 for m in all_messages if m.message_type == "user_message" and m.content.startswith("turn 0 ")) == 1
    summary = next(m for m in all_messages if m.id == state.message_ids[1])  # ...and a summary took their place
    assert "hidden from view" in json.loads(summary.content)["message"]
    assert state.message_ids[-1] == all_messages[-1].id  # the window ends with the newest message


def test_twenty_concurrent_sends_to_one_agent_never_interleave_or_drop(client):
    agent = client.agents.create(model=MODEL)
    texts = [f"concurrent-{i}" for i in range(20)]
    errors = []

    def send(text: str) -> None:
        try:
            response = client.agents.messages.create(agent.id, messages=[user(text)])
            assert response.messages[-1].content == f"ack {text}"
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=send, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = history(client, agent.id)[1:]
    pairs = [(listed[i].content, listed[i + 1].content) for i in range(0, len(listed), 2)]
    assert sorted(pairs) == sorted((t, f"ack {t}") for t in texts)
    assert [m.message_type for m in listed] == ["user_message", "assistant_message"] * 20
    assert client.agents.retrieve(agent.id).message_ids == [m.id for m in history(client, agent.id)]


def test_repeated_otid_is_one_turn_with_the_first_result(client, fake_openai):
    agent = client.agents.create(model=MODEL)
    otid = str(uuid.uuid4())
    first = client.agents.messages.create(agent.id, messages=[user("once", otid=otid)])
    calls = len(fake_openai.requests)
    again = client.agents.messages.create(agent.id, messages=[user("once", otid=otid)])
    assert len(fake_openai.requests) == calls  # no second model call
    assert [m.id for m in again.messages] == [m.id for m in first.messages]
    assert [m.content for m in history(client, agent.id) if m.message_type == "user_message"] == ["once"]


def test_idempotency_key_header_makes_concurrent_retries_one_turn(client):
    agent = client.agents.create(model=MODEL)
    key = str(uuid.uuid4())
    results = []

    def send() -> None:
        r = client.agents.messages.create(agent.id, messages=[user("keyed")], extra_headers={"Idempotency-Key": key})
        results.append([m.id for m in r.messages])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert [m.content for m in history(client, agent.id) if m.message_type == "user_message"] == ["keyed"]
    assert len(client.runs.list(agent_id=agent.id).items) == 1


def test_reset_empties_the_context_but_keeps_history(client):
    agent = client.agents.create(model=MODEL)
    client.agents.messages.create(agent.id, messages=[user("before reset")])
    state = client.agents.messages.reset(agent.id)
    assert state is None or len(state.message_ids) == 1
    assert len(client.agents.retrieve(agent.id).message_ids) == 1
    assert len(history(client, agent.id)) == 3
    after = client.agents.messages.create(agent.id, messages=[user("after reset")])
    assert after.messages[0].content == "ack after reset"


def test_message_buffer_autoclear_keeps_only_the_system_message_in_context(client, fake_openai):
    agent = client.agents.create(model=MODEL, message_buffer_autoclear=True)
    client.agents.messages.create(agent.id, messages=[user("first")])
    client.agents.messages.create(agent.id, messages=[user("second")])
    sent = fake_openai.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[1]["content"] == "second"
    assert len(client.agents.retrieve(agent.id).message_ids) == 1


def test_cancel_stops_a_running_turn_between_steps(client):
    agent = client.agents.create(model=MODEL, memory_blocks=[{"label": "human", "value": "Name: Sam"}])
    # Two steps, each a slow model call: the cancel lands during the first and the second never happens.
    text = call("memory_replace", label="human", old_string="Sam", new_string="Samuel") + " SLOW 1500"
    run = client.agents.messages.create_async(agent.id, messages=[user(text)])
    deadline = time.monotonic() + 10
    while client.runs.retrieve(run.id).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.agents.messages.cancel(agent.id) == {run.id: "cancelled"}
    while (done := client.runs.retrieve(run.id)).status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert done.status == "cancelled" and done.stop_reason == "cancelled"
    kinds = [m.message_type for m in history(client, agent.id)]
    assert kinds[-3:] == ["user_message", "tool_call_message", "tool_return_message"]  # the first step stays
    with pytest.raises(ConflictError):
        client.agents.messages.cancel(agent.id)  # nothing left to cancel


def test_cancel_without_active_runs_is_409(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(ConflictError):
        client.agents.messages.cancel(agent.id)


def test_client_tools_are_refused_clearly(client, server):
    agent = client.agents.create(model=MODEL)
    r = httpx.post(
        f"{server.url}/v1/agents/{agent.id}/messages",
        json={"messages": [user("x")], "client_tools": [{"name": "t"}]},
        timeout=10,
    )
    assert r.status_code == 400 and "client_tools" in r.json()["detail"]


def test_wrong_role_is_422(client):
    agent = client.agents.create(model=MODEL)
    with pytest.raises(UnprocessableEntityError):
        client.agents.messages.create(agent.id, messages=[{"role": "wizard", "content": "x"}])
