"""A lease shorter than a turn (R8, lease + fence): while renewal works, turns longer than the lease TTL are still
serialized; when the holder cannot renew -- a paused process (SIGSTOP) -- its lease expires, another instance
takes the agent and commits, and the fence at commit refuses the paused writer when it wakes up. At worst a
turn fails, cleanly (409, its run failed); the history never interleaves, duplicates or loses a turn."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import httpx

from tests.cluster.test_cluster import (
    Send,
    assert_history_paired,
    check_workload,
    deliver,
    deliver_all,
    history,
    make_agents,
    model_calls,
)

TTL_S = 2.0  # renewed every TTL_S / 3: wide enough that a loaded machine does not let a healthy lease lapse
TTL = {"RECALLD_LEASE_TTL": str(TTL_S)}
FENCED = ("changed while this turn was running", "Lost the lease")


def wait_until_thinking(cluster, fake_openai, send: Send, timeout_s: float = 20) -> tuple[str, int]:
    """The send's run is running and the model has its request: returns (run id, pid of the instance)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = cluster.sql(f"SELECT id, lease_holder FROM runs WHERE input_otid = '{send.otid}' AND status = 'running'")
        if rows and model_calls(fake_openai, send.text):
            [[run_id, holder]] = rows
            return run_id, int(holder.split(":")[1])
        assert time.monotonic() < deadline, f"the turn {send.text!r} never started"
        time.sleep(0.03)


class Paused:
    """SIGSTOP an instance (a paused process: GC pause, VM freeze, SIGSTOP) until the block ends."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self) -> Paused:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def assert_no_traceback(cluster) -> None:
    for server in cluster.servers:
        assert "Traceback" not in server.log_tail(1_000_000), server.log_tail(4000)


def assert_fenced(send: Send) -> None:
    assert send.status == 409, (send.status, send.error)
    assert any(reason in json.loads(send.error)["detail"] for reason in FENCED), send.error


def test_paused_holder_loses_its_lease_and_the_fence_refuses_its_step(start_cluster, private_redis, fake_openai):
    cluster = start_cluster(2, nginx=False, RECALLD_REDIS_URL=private_redis.url, **TTL)
    paused_server, other = cluster.servers
    with httpx.Client(base_url=other.url, timeout=30) as http:
        [agent_id] = make_agents(http, 1, memory_blocks=[{"label": "human", "value": "Name: Sam"}])
    # The stale writer's step edits memory: the edit must not survive the refused commit either.
    edit = json.dumps({"label": "human", "old_string": "Sam", "new_string": "Samuel"})
    stale = Send(agent_id, f"SLOW 1000 CALL memory_replace {edit}")
    stale_client = httpx.Client(base_url=paused_server.url, timeout=60)
    worker = threading.Thread(target=deliver, args=(stale_client, stale))
    worker.start()
    try:
        run_id, pid = wait_until_thinking(cluster, fake_openai, stale)
        assert pid == paused_server.pid
        with Paused(pid), httpx.Client(base_url=other.url, timeout=30) as http:
            time.sleep(TTL_S + 0.5)  # the paused holder could not renew: its lease has expired
            newer = deliver(http, Send(agent_id, "while the holder is paused"))
            assert newer.status == 200 and newer.reply == "ack while the holder is paused", newer.error
        worker.join(timeout=30)
        assert not worker.is_alive()
    finally:
        stale_client.close()
    # The paused writer woke up with a model answer in hand and tried to commit: refused, cleanly.
    assert_fenced(stale)
    with httpx.Client(base_url=other.url, timeout=30) as http:
        run = http.get(f"/v1/runs/{run_id}").json()
        assert run["status"] == "failed" and run["stop_reason"] == "error", run
        assert http.get(f"/v1/agents/{agent_id}/core-memory/blocks/human").json()["value"] == "Name: Sam"
        # Only the committed turn is stored, and the context is exactly the history.
        assert_history_paired(http, agent_id, {newer.text})
        # The refused send retried with its otid (contract R9) is then the same turn, and completes once.
        retried = deliver(http, Send(agent_id, stale.text, otid=stale.otid))
        assert retried.status == 200 and retried.reply == "done memory_replace", retried.error
        assert http.get(f"/v1/agents/{agent_id}/core-memory/blocks/human").json()["value"] == "Name: Samuel"
        listed = history(http, agent_id)
        kinds = [m["message_type"] for m in listed]
        assert kinds == [
            "system_message", "user_message", "assistant_message",
            "user_message", "tool_call_message", "tool_return_message", "assistant_message",
        ], kinds  # fmt: skip
        assert [m["content"] for m in listed if m["message_type"] == "user_message"] == [newer.text, stale.text]
        assert http.get(f"/v1/agents/{agent_id}").json()["message_ids"] == [m["id"] for m in listed]
    assert_no_traceback(cluster)


def test_turns_longer_than_the_lease_ttl_stay_serialized_while_renewed(start_cluster, private_redis):
    # Every turn takes 2.5 s against a 2 s lease: only renewal keeps the next turn of the agent out.
    cluster = start_cluster(3, RECALLD_REDIS_URL=private_redis.url, **TTL)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        agent_ids = make_agents(http, 8)
    sends = [Send(agent_ids[i % 8], f"SLOW 2500 renewed-{i:02d}") for i in range(24)]
    started = time.monotonic()
    deliver_all(cluster.url, sends, clients=24)
    wall_s = time.monotonic() - started
    failed = [(s.text, s.status, s.error) for s in sends if s.status != 200]
    assert not failed, f"{len(failed)} sends failed, e.g. {failed[:3]}"
    assert all(s.reply == f"ack {s.text}" for s in sends)
    # Three turns of 2.5 s per agent, one after another.
    assert wall_s >= 3 * 2.5, f"turns of one agent overlapped: {wall_s:.1f} s"
    check_workload(cluster.url, agent_ids, sends)
    assert cluster.sql("SELECT count(*) FROM runs WHERE status <> 'completed'") == [["0"]]


def test_instance_paused_under_load_only_fails_turns_never_interleaves(start_cluster, private_redis, fake_openai):
    """50 clients through nginx; meanwhile one instance is paused mid-turn for longer than the TTL and another
    instance takes over that turn's agent. The paused instance's turns may fail with a fence 409 when it wakes;
    no turn is interleaved, doubled or lost."""
    cluster = start_cluster(3, RECALLD_REDIS_URL=private_redis.url, **TTL)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        # The victim's agent gets no load: its takeover does not queue behind other turns (deterministic).
        victim_agent, *agent_ids = make_agents(http, 7)
    sends = [Send(agent_ids[i % 6], f"SLOW 300 load-{i:03d}") for i in range(90)]
    victim = Send(victim_agent, f"SLOW 3000 victim-{uuid.uuid4().hex[:6]}")
    takeover = Send(victim_agent, "takeover")
    load_started = threading.Event()
    outcome: dict[str, object] = {}

    def pause_the_victims_instance() -> None:
        load_started.wait()
        with httpx.Client(base_url=cluster.url, timeout=60) as http:
            worker = threading.Thread(target=deliver, args=(http, victim))
            worker.start()
            try:
                outcome["run_id"], pid = wait_until_thinking(cluster, fake_openai, victim)
                elsewhere = next(s for s in cluster.servers if s.pid != pid)
                # Paused with load turns of its own in flight; nginx keeps sending it requests, which wait.
                with Paused(pid), httpx.Client(base_url=elsewhere.url, timeout=60) as direct:
                    time.sleep(TTL_S + 0.5)
                    deliver(direct, takeover)
            finally:
                worker.join(timeout=60)

    pauser = threading.Thread(target=pause_the_victims_instance)
    pauser.start()
    try:
        load_started.set()
        deliver_all(cluster.url, sends, clients=50)
    finally:
        load_started.set()
        pauser.join(timeout=90)
    assert takeover.status == 200 and takeover.reply == "ack takeover", takeover.error
    assert_fenced(victim)
    everything = [*sends, victim, takeover]
    odd = [(s.text, s.status, s.error) for s in everything if s.status not in (200, 409)]
    assert not odd, f"{len(odd)} sends failed otherwise, e.g. {odd[:3]}"
    for send in everything:
        if send.status == 409:
            assert_fenced(send)
    assert all(s.reply == f"ack {s.text}" for s in everything if s.status == 200)
    fenced = sum(s.status == 409 for s in everything)
    print(f"\n{len(everything)} sends, {fenced} refused by the fence")
    assert sum(s.status == 200 for s in sends) >= len(sends) - 20
    # A fenced turn stored nothing; every turn that answered 200 is there once, in one piece.
    check_workload(cluster.url, [victim_agent, *agent_ids], everything)
    failed_runs = cluster.sql("SELECT id FROM runs WHERE status <> 'completed'")
    assert [outcome["run_id"]] in failed_runs
    assert len(failed_runs) == fenced
    assert_no_traceback(cluster)
