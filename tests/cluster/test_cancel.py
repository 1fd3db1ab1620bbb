"""Cancelling a turn through another instance than the one running it (contract 4.7): the request is
recorded on the run, and the running instance stops the turn before its next model call."""

from __future__ import annotations

import json
import time

import httpx

MODEL = "openai/gpt-4o-mini"


def _two_step_text(tag: str) -> str:
    # A memory edit and then a reply: two slow model calls, so a cancel can land between them.
    args = {"label": "human", "old_string": "Sam", "new_string": f"Sam-{tag}"}
    return f"CALL memory_replace {json.dumps(args)} SLOW 1500 {tag}"


def _agent(http: httpx.Client) -> str:
    body = {"model": MODEL, "memory_blocks": [{"label": "human", "value": "Name: Sam"}]}
    response = http.post("/v1/agents/", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _send_async(http: httpx.Client, agent_id: str, text: str) -> str:
    body = {"messages": [{"role": "user", "content": text}]}
    response = http.post(f"/v1/agents/{agent_id}/messages/async", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _wait_status(http: httpx.Client, run_id: str, wanted: set[str], timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while (run := http.get(f"/v1/runs/{run_id}").json())["status"] not in wanted:
        assert time.monotonic() < deadline, f"run {run_id} is still {run['status']}"
        time.sleep(0.05)
    return run


def _kinds(http: httpx.Client, agent_id: str) -> list[str]:
    page = http.get(f"/v1/agents/{agent_id}/messages", params={"order": "asc", "limit": 100}).json()
    return [m["message_type"] for m in page]


def test_a_cancel_sent_to_another_instance_stops_the_turn_between_steps(start_cluster):
    cluster = start_cluster(2, nginx=False)
    runner, other = cluster.servers
    with httpx.Client(base_url=runner.url, timeout=30) as a, httpx.Client(base_url=other.url, timeout=30) as b:
        agent_id = _agent(a)
        run_id = _send_async(a, agent_id, _two_step_text("x"))
        _wait_status(a, run_id, {"running"})
        response = b.post(f"/v1/agents/{agent_id}/messages/cancel", json={})
        assert response.status_code == 200 and response.json() == {run_id: "cancelled"}, response.text
        run = _wait_status(b, run_id, {"completed", "failed", "cancelled"})
        assert run["status"] == "cancelled" and run["stop_reason"] == "cancelled", run
        # The first step (the memory edit) is committed; the second model call never happened.
        assert _kinds(b, agent_id)[-3:] == ["user_message", "tool_call_message", "tool_return_message"]
        assert b.post(f"/v1/agents/{agent_id}/messages/cancel", json={}).status_code == 409


def test_a_queued_async_run_cancelled_elsewhere_never_runs(start_cluster, fake_openai):
    cluster = start_cluster(2, nginx=False)
    runner, other = cluster.servers
    with httpx.Client(base_url=runner.url, timeout=30) as a, httpx.Client(base_url=other.url, timeout=30) as b:
        agent_id = _agent(a)
        first = _send_async(a, agent_id, "SLOW 1500 first")
        _wait_status(a, first, {"running"})
        queued = _send_async(a, agent_id, "second, never to be sent")  # waits for the agent
        response = b.post(f"/v1/agents/{agent_id}/messages/cancel", json={"run_ids": [queued]})
        assert response.status_code == 200 and response.json() == {queued: "cancelled"}, response.text
        assert _wait_status(b, first, {"completed", "failed", "cancelled"})["status"] == "completed"
        run = _wait_status(b, queued, {"completed", "failed", "cancelled"})
        assert run["status"] == "cancelled", run
        texts = [json.dumps(r) for r in fake_openai.requests]
        assert not any("never to be sent" in t for t in texts)  # no model call for the cancelled run
        assert _kinds(b, agent_id)[-2:] == ["user_message", "assistant_message"]  # only the first turn
