"""SIGTERM (docs/ARCHITECTURE.md, failure paths): readiness turns 503 at once while the instance still serves
for the grace period; then it stops accepting connections, lets the turn in flight finish (or cuts it at the
drain timeout, failing its run like a crash), releases the agent's lease and exits 0 -- so another instance
takes the agent's next turn at once, not after the lease TTL."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import httpx
import pytest

from tests.cluster.test_cluster import Send, assert_history_paired, deliver, make_agents, model_calls
from tests.cluster.test_fence import assert_no_traceback, wait_until_thinking

GRACE_S = 2.5
TTL_S = 20.0
# A lease left behind would make the next turn wait TTL_S; with a shorter lease wait it fails fast instead.
LEASES = {"RECALLD_LEASE_TTL": str(TTL_S), "RECALLD_LEASE_WAIT": "10"}


def test_sigterm_finishes_the_turn_in_flight_then_exits_and_frees_the_agent(start_cluster, private_redis, fake_openai):
    cluster = start_cluster(
        2, nginx=False, RECALLD_REDIS_URL=private_redis.url, RECALLD_DRAIN_GRACE=str(GRACE_S),
        RECALLD_DRAIN_TIMEOUT="10", **LEASES,
    )  # fmt: skip
    draining, other = cluster.servers
    with httpx.Client(base_url=other.url, timeout=30) as http:
        [agent_id] = make_agents(http, 1)
    in_flight = Send(agent_id, f"SLOW 6000 in-flight-{uuid.uuid4().hex[:6]}")
    client = httpx.Client(base_url=draining.url, timeout=30)
    worker = threading.Thread(target=deliver, args=(client, in_flight))
    worker.start()
    try:
        wait_until_thinking(cluster, fake_openai, in_flight)
        draining.process.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        # The grace period: not ready (the balancer stops sending work), yet still serving what comes.
        with httpx.Client(base_url=draining.url, timeout=5) as probe:
            ready = probe.get("/v1/ready/")
            assert ready.status_code == 503 and ready.json()["status"] == "draining"
            assert probe.get(f"/v1/agents/{agent_id}").status_code == 200
            assert time.monotonic() - sigterm_at < GRACE_S
        # Then new connections are refused, while the turn is still running.
        refused_at = None
        while refused_at is None and time.monotonic() - sigterm_at < GRACE_S + 2:
            try:
                httpx.get(f"{draining.url}/v1/health/", timeout=1)
            except httpx.ConnectError:
                refused_at = time.monotonic()
            else:
                time.sleep(0.05)
        assert refused_at is not None, "still accepting connections after the grace period"
        assert refused_at - sigterm_at >= GRACE_S - 0.1, "stopped accepting before the grace period ended"
        assert worker.is_alive(), "the turn should still be running when connections are refused"
        worker.join(timeout=20)
    finally:
        client.close()
    # The turn in flight completed and was stored; the process then exited 0, well within grace + timeout.
    assert in_flight.status == 200 and in_flight.reply == f"ack {in_flight.text}", in_flight.error
    assert draining.process.wait(timeout=10) == 0
    assert time.monotonic() - sigterm_at < GRACE_S + 10
    # The agent is free at once on the other instance (its lease was released, not left to expire).
    with httpx.Client(base_url=other.url, timeout=30) as http:
        started = time.monotonic()
        after = deliver(http, Send(agent_id, "right after the drain"))
        assert after.status == 200, after.error
        assert time.monotonic() - started < TTL_S / 2
        assert_history_paired(http, agent_id, {in_flight.text, after.text})
    assert cluster.sql("SELECT count(*) FROM runs WHERE status <> 'completed'") == [["0"]]
    assert_no_traceback(cluster)


@pytest.mark.parametrize("lease_store", ["redis", "postgres"])
def test_turn_cut_by_the_drain_timeout_fails_its_run_and_releases_the_lease(
    start_cluster, private_redis, fake_openai, lease_store
):
    redis = {"RECALLD_REDIS_URL": private_redis.url} if lease_store == "redis" else {}
    cluster = start_cluster(2, nginx=False, RECALLD_DRAIN_GRACE="0.5", RECALLD_DRAIN_TIMEOUT="1", **LEASES, **redis)
    draining, other = cluster.servers
    with httpx.Client(base_url=other.url, timeout=30) as http:
        [agent_id] = make_agents(http, 1)
    # The turn would take 20 s; the drain timeout cuts it after 0.5 + 1 s.
    cut = Send(agent_id, f"SLOW 20000 cut-{uuid.uuid4().hex[:6]}")
    client = httpx.Client(base_url=draining.url, timeout=30)
    ended: list[float] = []
    worker = threading.Thread(target=lambda: (deliver(client, cut), ended.append(time.monotonic())))
    worker.start()
    try:
        run_id, _ = wait_until_thinking(cluster, fake_openai, cut)
        draining.process.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        assert draining.process.wait(timeout=15) == 0
        exited_s = time.monotonic() - sigterm_at
        worker.join(timeout=10)
    finally:
        client.close()
    assert cut.status != 200, cut.reply  # the connection was cut with the turn
    cut_s = ended[0] - sigterm_at
    assert cut_s < 0.5 + 1 + 2.5, f"the turn was cut {cut_s:.1f} s after SIGTERM"
    # Then the interpreter's own exit (about a second on an idle machine: freeing the embedding model).
    assert exited_s < 0.5 + 1 + 6, f"exited {exited_s:.1f} s after SIGTERM"
    assert model_calls(fake_openai, cut.text) == 1
    with httpx.Client(base_url=other.url, timeout=30) as http:
        # Ended like a crashed turn: the run is failed at once (not left for the reaper), nothing stored.
        run = http.get(f"/v1/runs/{run_id}").json()
        assert run["status"] == "failed", run
        started = time.monotonic()
        after = deliver(http, Send(agent_id, "after the cut turn"))
        assert after.status == 200, after.error
        assert time.monotonic() - started < TTL_S / 2
        assert_history_paired(http, agent_id, {after.text})
    # The only traceback is uvicorn's note of the request it cancelled; recording the failure raised nothing.
    log = draining.log_tail(1_000_000)
    assert log.count("Traceback") == log.count("CancelledError: Task cancelled, timeout graceful shutdown exceeded")
    assert "Traceback" not in other.log_tail(1_000_000)
