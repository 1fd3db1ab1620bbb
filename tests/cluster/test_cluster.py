"""Many instances, one truth: recalld instances on one PostgreSQL behind nginx behave like one
server -- turns of an agent never interleave, nothing is lost or stored twice, an exhausted pool answers 503,
no connection waits on the model, PgBouncer's transaction mode works, and a killed instance costs one turn."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.servers import free_port, server_env

MODEL = "openai/gpt-4o-mini"


# --- helpers ------------------------------------------------------------------------------------------------


@dataclass
class Send:
    """One user message a client sends, and what finally came back."""

    agent_id: str
    text: str
    otid: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: int | None = None
    reply: str | None = None
    retry_after: str | None = None
    attempts: int = 0
    error: str | None = None


def make_agents(http: httpx.Client, count: int, **body) -> list[str]:
    ids = []
    for _ in range(count):
        response = http.post("/v1/agents/", json={"model": MODEL, **body})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def deliver(http: httpx.Client, send: Send, *, retry_statuses: frozenset[int] = frozenset(), tries: int = 1) -> Send:
    """POST the message (with its otid, so a retry is the same turn, contract R9) until done or out of tries."""
    body = {"messages": [{"role": "user", "content": send.text, "otid": send.otid}]}
    for attempt in range(tries):
        send.attempts = attempt + 1
        try:
            response = http.post(f"/v1/agents/{send.agent_id}/messages", json=body)
        except httpx.HTTPError as e:
            send.status, send.error = None, f"{type(e).__name__}: {e}"
            continue
        send.status = response.status_code
        send.retry_after = response.headers.get("retry-after")
        if response.status_code == 200:
            messages = response.json()["messages"]
            send.reply = messages[-1].get("content") if messages else None
            return send
        send.error = response.text[:300]
        if response.status_code not in retry_statuses:
            return send
        time.sleep(min(float(send.retry_after or 0.2), 2.0))
    return send


def deliver_all(url: str, sends: list[Send], clients: int, **kwargs) -> list[Send]:
    """`clients` concurrent clients (threads over one connection pool) work through `sends`."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(base_url=url, limits=limits, timeout=120) as http, ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda s: deliver(http, s, **kwargs), sends))


def history(http: httpx.Client, agent_id: str) -> list[dict]:
    response = http.get(f"/v1/agents/{agent_id}/messages", params={"order": "asc", "limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()


def assert_history_paired(http: httpx.Client, agent_id: str, delivered: set[str], maybe: set[str] = frozenset()):
    """Each user message is immediately followed by its own reply; every delivered message is there once
    (`maybe`: messages whose fate the client could not know); the context holds the whole history."""
    listed = history(http, agent_id)
    assert listed[0]["message_type"] == "system_message"
    turns = listed[1:]
    kinds = [m["message_type"] for m in turns]
    assert kinds == ["user_message", "assistant_message"] * (len(turns) // 2), f"interleaved: {kinds}"
    pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns), 2)]
    wrong = [(u, r) for u, r in pairs if r != f"ack {u}"]
    assert not wrong, f"replies not following their own message: {wrong[:5]}"
    texts = [u for u, _ in pairs]
    assert len(texts) == len(set(texts)), "a user message is stored twice"
    assert delivered <= set(texts), f"lost: {sorted(delivered - set(texts))[:10]}"
    assert set(texts) <= delivered | maybe, f"unexpected: {sorted(set(texts) - delivered - maybe)[:10]}"
    agent = http.get(f"/v1/agents/{agent_id}").json()
    assert agent["message_ids"] == [m["id"] for m in listed], "a turn is missing from the agent's context"


def workload(agent_ids: list[str], messages: int, tag: str = "m") -> list[Send]:
    """Message i goes to agent i mod N: every agent gets concurrent turns."""
    return [Send(agent_ids[i % len(agent_ids)], f"{tag}-{i:03d}") for i in range(messages)]


def check_workload(url: str, agent_ids: list[str], sends: list[Send], maybe_statuses: frozenset[int] = frozenset()):
    with httpx.Client(base_url=url, timeout=30) as http:
        for agent_id in agent_ids:
            mine = [s for s in sends if s.agent_id == agent_id]
            delivered = {s.text for s in mine if s.status == 200}
            maybe = {s.text for s in mine if s.status in maybe_statuses or s.status is None}
            assert_history_paired(http, agent_id, delivered, maybe)


class PoolWatch(threading.Thread):
    """Samples the connections open to a database (pg_stat_activity) until stopped; `peak` is the most seen."""

    def __init__(self, cluster, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.interval_s = interval_s
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE datname = '{self.cluster.database}' AND pid <> pg_backend_pid()"
        )
        while not self._done.is_set():
            self.peak = max(self.peak, int(self.cluster.sql(query)[0][0]))
            self._done.wait(self.interval_s)

    def __enter__(self) -> PoolWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()


# --- nginx and `recalld cluster` ----------------------------------------------------------------------------


def test_nginx_balances_over_instances_and_streams_without_buffering(start_cluster):
    cluster = start_cluster(2)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        # Forwarded headers: the slash redirect names the proxy's own address (contract R19).
        redirect = http.get("/v1/agents")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == f"{cluster.url}/v1/agents/"
        # nginx refuses what recalld refuses, with recalld's body.
        too_big = http.post("/v1/agents/", content=b"x" * (8 * 1024 * 1024 + 1), headers={"content-type": "text/plain"})
        assert too_big.status_code == 413 and "limit is 8388608 bytes" in too_big.json()["detail"]
        # nginx's own refusals are JSON too (R16), while the instances' own errors pass through.
        long_url = http.get("/v1/agents/", params={"name": "a" * 10_000})
        assert long_url.status_code == 414 and "URL under 8 KiB" in long_url.json()["detail"]
        big_header = http.get("/v1/agents/", headers={"x-padding": "a" * 10_000})
        assert big_header.status_code == 431 and "headers too large" in big_header.json()["detail"]
        address = urlsplit(cluster.url)
        with socket.create_connection((address.hostname, address.port)) as raw:
            raw.sendall(b"GET /v1/agents/ HTTP/1.1 trailing-garbage\r\nHost: x\r\n\r\n")
            head, _, body = raw.recv(65536).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and "could not be parsed" in json.loads(body)["detail"]
        own_error = http.get("/v1/agents/", params={"limit": -1})
        assert own_error.status_code == 422 and own_error.json()["detail"].startswith("Invalid request")
        [agent_id] = make_agents(http, 1, memory_blocks=[{"label": "human", "value": "Name: Sam"}])
        # A two-step turn, each model call 1.5 s: the first step's events must arrive while the second runs.
        text = "SLOW 1500 CALL memory_replace " + json.dumps(
            {"label": "human", "old_string": "Sam", "new_string": "Samuel"}
        )
        started = time.monotonic()
        arrivals: list[tuple[float, str]] = []
        body = {"messages": [{"role": "user", "content": text}], "stream_tokens": False}
        with http.stream("POST", f"/v1/agents/{agent_id}/messages/stream", json=body) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    arrivals.append((time.monotonic() - started, json.loads(line[6:])["message_type"]))
        ended = time.monotonic() - started
        first_tool_event = next(t for t, kind in arrivals if kind == "tool_call_message")
        assert ended >= 2.9
        assert first_tool_event < ended - 1.0, f"events were held back until the end: {arrivals}"
        for _ in range(10):
            assert http.get(f"/v1/agents/{agent_id}").status_code == 200
    time.sleep(1.2)  # the access log is flushed every second
    assert cluster.upstreams_used() == {f"127.0.0.1:{s.port}" for s in cluster.servers}


def test_recalld_cluster_refuses_many_instances_on_sqlite(tmp_path):
    env = server_env(tmp_path, pg_uri=None, openai_base_url=None)
    result = subprocess.run(
        [sys.executable, "-m", "recalld", "cluster", "--instances", "2"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "SQLite" in result.stderr and "not a cluster" in result.stderr


def _free_port_run(count: int) -> int:
    from recalld.cluster import port_is_free

    for _ in range(50):
        base = free_port()
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def test_recalld_cluster_command_serves_through_nginx_and_stops_on_sigterm(tmp_path, fake_openai, pg_database):
    env = server_env(tmp_path, pg_uri=None, openai_base_url=fake_openai.base_url)
    env.update(RECALLD_PG_POOL_SIZE="3", RECALLD_PG_MAX_OVERFLOW="0", RECALLD_DRAIN_GRACE="0")
    port, base = free_port(), _free_port_run(2)
    command = [
        sys.executable, "-m", "recalld", "cluster", "--instances", "2", "--port", str(port), "--base-port",
        str(base), "--pg-uri", pg_database, "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    with open(tmp_path / "cluster.err", "wb") as err:
        cluster = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        url = cluster.stdout.readline().strip()  # printed once every instance is ready
        assert url == f"http://127.0.0.1:{port}", (tmp_path / "cluster.err").read_text()
        with httpx.Client(base_url=url, timeout=30) as http:
            [agent_id] = make_agents(http, 1)
            assert deliver(http, Send(agent_id, "through the cluster")).reply == "ack through the cluster"
            for instance_port in (base, base + 1):
                assert httpx.get(f"http://127.0.0.1:{instance_port}/v1/ready/").status_code == 200
        children = subprocess.run(["pgrep", "-P", str(cluster.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 3  # two instances and nginx
        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=40) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/v1/health/", timeout=2)
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()


# --- start-up -----------------------------------------------------------------------------------------------


def test_instances_starting_together_on_a_fresh_database_all_come_up(tmp_path, fake_openai, pg_database):
    from tests.cluster.conftest import SMALL_POOL
    from tests.servers import RecalldServer

    env = server_env(tmp_path, pg_uri=pg_database, openai_base_url=fake_openai.base_url, **SMALL_POOL)
    servers = [RecalldServer(env=dict(env)) for _ in range(3)]
    try:
        for server in servers:
            server.launch(tmp_path)  # no migration first: each migrates (under the advisory lock) and bootstraps
        for server in servers:
            server.wait_healthy(path="/v1/ready/")
    finally:
        for server in servers:
            server.kill()


# --- one turn at a time per agent, across instances ---------------------------------------------------------


def test_fifty_clients_through_nginx_keep_every_agent_history_paired(start_cluster, private_redis):
    cluster = start_cluster(3, RECALLD_REDIS_URL=private_redis.url)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        agent_ids = make_agents(http, 5)
    sends = deliver_all(cluster.url, workload(agent_ids, 300), clients=50)
    failed = [(s.text, s.status, s.error) for s in sends if s.status != 200]
    assert not failed, f"{len(failed)} sends failed, e.g. {failed[:3]}"
    assert all(s.reply == f"ack {s.text}" for s in sends)
    check_workload(cluster.url, agent_ids, sends)


def test_redis_stopped_mid_run_falls_back_or_refuses_cleanly_never_interleaves(start_cluster, private_redis):
    cluster = start_cluster(3, RECALLD_REDIS_URL=private_redis.url)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        agent_ids = make_agents(http, 5)
    sends = workload(agent_ids, 300)
    done = threading.Event()

    def kill_redis_midway() -> None:
        while not done.is_set() and sum(s.status is not None for s in sends) < 100:
            time.sleep(0.01)
        private_redis.kill()

    killer = threading.Thread(target=kill_redis_midway)
    killer.start()
    try:
        # A 503 is a clean refusal (Retry-After); a client retries it with the same otid, as R9 allows.
        deliver_all(cluster.url, sends, clients=50, retry_statuses=frozenset({503}), tries=5)
    finally:
        done.set()
        killer.join()
    assert not private_redis.running
    # Never interleaved, nothing stored twice, whatever the statuses were (a refused turn stores nothing).
    check_workload(cluster.url, agent_ids, sends, maybe_statuses=frozenset({409, 503}))
    # And the only refusals are clean ones: 503 + Retry-After, not a fence conflict between two holders.
    odd = [(s.text, s.status, s.error) for s in sends if s.status not in (200, 503)]
    assert not odd, f"{len(odd)} sends failed otherwise, e.g. {odd[:3]}"
    assert all(s.retry_after for s in sends if s.status == 503)
    assert all(s.reply == f"ack {s.text}" for s in sends if s.status == 200)
    # After the fall-back the cluster still takes turns (on PostgreSQL leases).
    with httpx.Client(base_url=cluster.url, timeout=60) as http:
        assert deliver(http, Send(agent_ids[0], "after redis"), retry_statuses=frozenset({503}), tries=5).status == 200


# --- pools --------------------------------------------------------------------------------------------------


def test_exhausted_pool_answers_503_with_retry_after_and_never_hangs(start_cluster):
    cluster = start_cluster(
        1, nginx=False, RECALLD_PG_POOL_SIZE="1", RECALLD_PG_MAX_OVERFLOW="0", RECALLD_PG_POOL_TIMEOUT="1"
    )
    server = cluster.servers[0]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        [agent_id] = make_agents(http, 1)
    # The one pooled connection is held by a request whose query waits on a table lock taken here; every
    # other request then waits for the pool, and must get 503 + Retry-After after pool_timeout (1 s).
    locker = subprocess.Popen(
        [
            "psql", cluster.database_uri, "-X", "-qc",
            "BEGIN; LOCK TABLE agents IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        lock = "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'agents'::regclass"
        while cluster.sql(lock)[0][0] == "0":
            assert time.monotonic() < deadline, "the table lock was never taken"
            time.sleep(0.05)
        limits = httpx.Limits(max_connections=60)
        with httpx.Client(base_url=server.url, timeout=15, limits=limits) as http, ThreadPoolExecutor(60) as pool:
            holder = pool.submit(http.get, f"/v1/agents/{agent_id}")
            time.sleep(0.3)

            def timed(path: str) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                response = http.get(path)
                return response, time.monotonic() - started

            paths = [f"/v1/agents/{agent_id}", "/v1/agents/", "/v1/blocks/", f"/v1/agents/{agent_id}/messages"] * 12
            results = list(pool.map(timed, paths))
            held = holder.result()
    finally:
        locker.wait(timeout=20)
    statuses = [r.status_code for r, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    refused = [(r, s) for r, s in results if r.status_code == 503]
    assert len(refused) >= 40, statuses
    assert all(r.headers.get("retry-after") for r, _ in refused)
    assert all("pool" in r.json()["detail"].lower() for r, _ in refused)
    assert max(s for _, s in refused) < 3.5, "a request waited far beyond pool_timeout"
    assert held.status_code == 200  # the request holding the connection finishes once the lock is gone
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get(f"/v1/agents/{agent_id}").status_code == 200
    assert "Traceback" not in server.log_tail(20000)


def test_no_connection_is_held_during_the_llm_call_fifty_turns_on_a_pool_of_five(start_cluster):
    # Were a connection held while the model thinks (2 s), 50 turns on 5 connections would take >= 20 s,
    # and with a 5 s pool timeout most of them would get 503.
    cluster = start_cluster(
        1, nginx=False, RECALLD_PG_POOL_SIZE="5", RECALLD_PG_MAX_OVERFLOW="0", RECALLD_PG_POOL_TIMEOUT="5"
    )
    server = cluster.servers[0]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        agent_ids = make_agents(http, 50)
    sends = [Send(agent_id, f"SLOW 2000 turn-{i}") for i, agent_id in enumerate(agent_ids)]
    with PoolWatch(cluster) as watch:
        started = time.monotonic()
        deliver_all(server.url, sends, clients=50)
        wall_s = time.monotonic() - started
    assert [s.status for s in sends] == [200] * 50, [(s.status, s.error) for s in sends if s.status != 200][:3]
    assert all(s.reply == f"ack {s.text}" for s in sends)
    print(f"\n50 turns of 2 s on a pool of 5: {wall_s:.2f} s, peak {watch.peak} connections")
    assert wall_s < 6.0, f"50 turns of 2 s took {wall_s:.1f} s on a pool of 5"
    assert 1 <= watch.peak <= 5, f"{watch.peak} connections open at once"


# --- PgBouncer ----------------------------------------------------------------------------------------------


def test_pgbouncer_transaction_mode_serves_agents_blocks_and_turns(start_cluster, pgbouncer, pg_database):
    cluster = start_cluster(1, nginx=False, pg_uri=pgbouncer.uri_for(pg_database), RECALLD_DISABLE_POOLING="true")
    server = cluster.servers[0]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        shared = http.post("/v1/blocks/", json={"label": "project", "value": "recalld"})
        assert shared.status_code == 200, shared.text
        agent_ids = make_agents(
            http, 4, memory_blocks=[{"label": "human", "value": "Name: Sam"}], block_ids=[shared.json()["id"]]
        )
        sends = workload(agent_ids, 16, tag="bouncer")
        edit = "CALL memory_replace " + json.dumps({"label": "human", "old_string": "Sam", "new_string": "Samuel"})
        for agent_id in agent_ids:
            body = {"messages": [{"role": "user", "content": edit}]}
            response = http.post(f"/v1/agents/{agent_id}/messages", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["messages"][-1]["content"] == "done memory_replace"
    # Turns of different agents in parallel: their transactions share PgBouncer's two server connections.
    deliver_all(server.url, sends, clients=8)
    assert [s.status for s in sends] == [200] * len(sends), [(s.status, s.error) for s in sends if s.status != 200]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for agent_id in agent_ids:
            assert http.get(f"/v1/agents/{agent_id}/core-memory/blocks/human").json()["value"] == "Name: Samuel"
            listed = history(http, agent_id)
            user_texts = [m["content"] for m in listed if m["message_type"] == "user_message"]
            assert sorted(user_texts[1:]) == sorted(s.text for s in sends if s.agent_id == agent_id)
            assert http.get(f"/v1/agents/{agent_id}").json()["message_ids"] == [m["id"] for m in listed]
        assert len(http.get("/v1/agents/", params={"limit": 100}).json()) == 4
        assert any(b["label"] == "project" for b in http.get("/v1/blocks/", params={"limit": 100}).json())
    assert "prepared statement" not in server.log_tail(50000)


# --- a crashed instance -------------------------------------------------------------------------------------


def model_calls(fake_openai, text: str) -> int:
    """Chat requests the scripted LLM received whose last message is `text`."""
    return sum(
        1 for body in fake_openai.requests_with("messages") if (body["messages"] or [{}])[-1].get("content") == text
    )


@dataclass
class Interrupted:
    agent_id: str
    send: Send
    run_id: str
    killed_port: int


def kill_instance_mid_turn(cluster, fake_openai) -> Interrupted:
    """Send a slow turn through nginx, find the instance running it (the run's lease holder names its pid) and
    kill -9 it while the model is thinking."""
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        [agent_id] = make_agents(http, 1)
    send = Send(agent_id, f"SLOW 3000 interrupted-{uuid.uuid4().hex[:6]}")
    client = httpx.Client(base_url=cluster.url, timeout=30)
    worker = threading.Thread(target=deliver, args=(client, send))
    worker.start()
    deadline = time.monotonic() + 10
    rows: list[list[str]] = []
    # Running, and the model has the request: the instance is inside the turn, between its reads and writes.
    while not (rows and model_calls(fake_openai, send.text)):
        assert time.monotonic() < deadline, "the turn never started"
        time.sleep(0.05)
        rows = cluster.sql(f"SELECT id, lease_holder FROM runs WHERE agent_id = '{agent_id}' AND status = 'running'")
    [[run_id, holder]] = rows
    victim = cluster.server_with_pid(int(holder.split(":")[1]))
    victim.kill()
    worker.join(timeout=30)
    client.close()
    return Interrupted(agent_id, send, run_id, victim.port)


def test_kill_9_mid_turn_other_instances_keep_serving(start_cluster, fake_openai):
    cluster = start_cluster(3, RECALLD_LEASE_TTL="3")
    interrupted = kill_instance_mid_turn(cluster, fake_openai)
    # The client of the killed instance gets nginx's 502; nginx did not send the POST to another instance.
    assert interrupted.send.status == 502
    assert "resend it with the same otid" in json.loads(interrupted.send.error)["detail"]  # nginx's, as JSON
    assert model_calls(fake_openai, interrupted.send.text) == 1
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        agent_ids = make_agents(http, 3)
    sends = deliver_all(cluster.url, workload(agent_ids, 30, tag="after-kill"), clients=10)
    assert [s.status for s in sends] == [200] * 30, [(s.status, s.error) for s in sends if s.status != 200][:3]
    check_workload(cluster.url, agent_ids, sends)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for _ in range(20):
            assert http.get("/v1/agents/", params={"limit": 10}).status_code == 200


def test_kill_9_mid_turn_run_ends_failed_and_its_retry_completes_once(start_cluster, fake_openai):
    cluster = start_cluster(3, RECALLD_LEASE_TTL="3")
    interrupted = kill_instance_mid_turn(cluster, fake_openai)
    with httpx.Client(base_url=cluster.url, timeout=60) as http:
        deadline = time.monotonic() + 20
        while (run := http.get(f"/v1/runs/{interrupted.run_id}").json())["status"] != "failed":
            assert time.monotonic() < deadline, f"the interrupted run is still {run['status']}"
            time.sleep(0.2)
        # The same send again (same otid): the turn completes, once.
        retried = deliver(http, Send(interrupted.agent_id, interrupted.send.text, otid=interrupted.send.otid))
        assert retried.status == 200 and retried.reply == f"ack {interrupted.send.text}", retried.error
        calls = len(fake_openai.requests)
        again = deliver(http, Send(interrupted.agent_id, interrupted.send.text, otid=interrupted.send.otid))
        assert again.status == 200 and again.reply == retried.reply
        assert len(fake_openai.requests) == calls  # the recorded result, not a new turn
        assert_history_paired(http, interrupted.agent_id, {interrupted.send.text})

