"""/metrics moves with what the server does: requests, turns, model calls, pools and lease waits."""

from __future__ import annotations

import threading

import httpx
from prometheus_client.parser import text_string_to_metric_families

MODEL = "openai/gpt-4o-mini"


def scrape(server) -> dict[tuple[str, tuple], float]:
    r = httpx.get(f"{server.url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def total(values: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in values.items() if n == name and all((k, x) in lab for k, x in labels.items()))


def test_requests_turns_and_model_calls_are_counted(client, server):
    before = scrape(server)
    agent = client.agents.create(model=MODEL)
    client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "count me"}])
    after = scrape(server)
    route = "/v1/agents/{agent_id}/messages"
    assert total(after, "recalld_http_requests_total", route=route, status="200") == \
        total(before, "recalld_http_requests_total", route=route, status="200") + 1
    assert total(after, "recalld_turns_total", stop_reason="end_turn") >= \
        total(before, "recalld_turns_total", stop_reason="end_turn") + 1
    assert total(after, "recalld_llm_request_duration_seconds_count", model="gpt-4o-mini") >= \
        total(before, "recalld_llm_request_duration_seconds_count", model="gpt-4o-mini") + 1
    assert total(after, "recalld_llm_tokens_total", kind="prompt") > total(before, "recalld_llm_tokens_total",
                                                                           kind="prompt")
    # Ids never become labels: the route template does.
    assert not any("agent-" in dict(lab).get("route", "") for (_, lab) in after)


def test_pool_gauges_and_queue_gauge_are_exported(server):
    values = scrape(server)
    assert total(values, "recalld_db_pool_size", engine="primary") > 0
    assert ("recalld_db_pool_checked_out", (("engine", "primary"),)) in values
    assert ("recalld_turns_queued", ()) in values


def test_lease_waits_show_contention(client, server):
    agent = client.agents.create(model=MODEL)
    before = scrape(server)
    threads = [threading.Thread(target=client.agents.messages.create, args=(agent.id,),
                                kwargs={"messages": [{"role": "user", "content": f"SLOW 200 c{i}"}]})
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = scrape(server)
    assert total(after, "recalld_lease_contention_total") >= total(before, "recalld_lease_contention_total") + 2
    assert total(after, "recalld_lease_wait_seconds_sum") > total(before, "recalld_lease_wait_seconds_sum")


def test_provider_errors_are_counted(client, server):
    agent = client.agents.create(model=MODEL)
    before = scrape(server)
    try:
        client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "FAIL 400"}])
    except Exception:  # noqa: BLE001 - the failure itself is tested elsewhere
        pass
    after = scrape(server)
    assert total(after, "recalld_llm_errors_total") == total(before, "recalld_llm_errors_total") + 1


def test_embedding_calls_are_timed_by_provider_and_model(client, server):
    local = client.agents.create(model=MODEL)
    remote = client.agents.create(model=MODEL, embedding="openai/text-embedding-3-small")
    before = scrape(server)
    client.agents.passages.create(local.id, text="embedded here")
    client.agents.passages.create(remote.id, text="embedded by the provider")
    after = scrape(server)
    count = "recalld_embedding_duration_seconds_count"
    assert total(after, count, provider="local", model="all-minilm-l6-v2") == \
        total(before, count, provider="local", model="all-minilm-l6-v2") + 1
    assert total(after, count, provider="openai", model="text-embedding-3-small") == \
        total(before, count, provider="openai", model="text-embedding-3-small") + 1
    assert total(after, "recalld_embedding_duration_seconds_sum", provider="local") > \
        total(before, "recalld_embedding_duration_seconds_sum", provider="local")
