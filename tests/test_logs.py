"""Structured logs (obs/logs.py): a real server logs one JSON object per line, uvicorn's lines included;
the lines of a request carry its id (echoed in X-Request-Id), the lines of a turn its agent and run."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import httpx
import orjson
import pytest
from letta_client import Letta

from recalld import __version__
from recalld.obs.context import agent_id_from_path
from recalld.obs.logs import AGENT_ID, REQUEST_ID, RUN_ID, JsonFormatter, TextFormatter, logging_config, redact
from tests.servers import RecalldServer, server_env, serving

MODEL = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory, fake_openai):
    tmp_dir = tmp_path_factory.mktemp("recalld-logs")
    # No RECALLD_LOG_FORMAT: JSON is what `recalld serve` writes by default.
    env = server_env(tmp_dir, pg_uri=None, openai_base_url=fake_openai.base_url, RECALLD_LOG_LEVEL="info")
    yield from serving(env, tmp_dir)


@pytest.fixture
def client(logged_server) -> Letta:
    return Letta(base_url=logged_server.url, max_retries=0, timeout=30)


def log_size(server: RecalldServer) -> int:
    return server.log_path.stat().st_size


def lines_since(server: RecalldServer, offset: int) -> list[dict]:
    """The JSON objects logged after `offset`; fails on any line that is not one."""
    text = server.log_path.read_bytes()[offset:].decode()
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def wait_for_line(server: RecalldServer, offset: int, match) -> list[dict]:  # noqa: ANN001
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = lines_since(server, offset)
        if any(match(line) for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no matching line in {lines_since(server, offset)}")


def is_access_line(request_id: str):  # noqa: ANN201
    return lambda line: line["logger"] == "uvicorn.access" and line.get("request_id") == request_id


def test_every_line_of_a_request_is_json_with_its_id_and_turn_lines_carry_agent_and_run(client, logged_server):
    agent = client.agents.create(model=MODEL)
    request_id = f"req-{uuid.uuid4().hex}"
    offset = log_size(logged_server)
    raw = client.agents.messages.with_raw_response.create(
        agent.id, messages=[{"role": "user", "content": "log me"}], extra_headers={"X-Request-Id": request_id}
    )
    assert raw.headers["x-request-id"] == request_id
    run_id = raw.parse().messages[0].run_id

    lines = wait_for_line(logged_server, offset, is_access_line(request_id))
    assert lines and all(line.get("request_id") == request_id for line in lines), lines
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= line.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    [access] = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access["agent_id"] == agent.id and access["status"] == 200 and access["method"] == "POST"
    # The model call is logged by the provider HTTP session inside the turn.
    model_calls = [line for line in lines
                   if line["logger"] == "recalld.llm.http" and "/chat/completions" in line["message"]]
    assert model_calls
    assert all(line["agent_id"] == agent.id and line["run_id"] == run_id for line in model_calls)


def test_lines_of_a_background_turn_carry_the_request_that_started_it(client, logged_server):
    agent = client.agents.create(model=MODEL)
    request_id = f"req-{uuid.uuid4().hex}"
    offset = log_size(logged_server)
    run = client.agents.messages.create_async(
        agent.id, messages=[{"role": "user", "content": "later"}], extra_headers={"X-Request-Id": request_id}
    )
    lines = wait_for_line(logged_server, offset, lambda line: line.get("run_id") == run.id)
    turn_lines = [line for line in lines if line.get("run_id") == run.id]
    assert all(line["request_id"] == request_id and line["agent_id"] == agent.id for line in turn_lines)


def test_a_missing_or_malformed_request_id_is_replaced_by_a_fresh_one(logged_server):
    for headers in ({}, {"X-Request-Id": "has spaces in it"}, {"X-Request-Id": "x" * 129}):
        offset = log_size(logged_server)
        response = httpx.get(f"{logged_server.url}/v1/agents/", headers=headers, timeout=10)
        made = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        wait_for_line(logged_server, offset, is_access_line(made))


def test_uvicorns_own_lines_are_json_too(logged_server):
    lines = lines_since(logged_server, 0)  # also: every line since start-up parses
    messages = {(line["logger"], line["message"]) for line in lines}
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert ("recalld.api.app", f"recalld {__version__} ready on sqlite") in messages
    assert not any("color_message" in line for line in lines)


# --- the formatter alone ------------------------------------------------------------------------------------


def format_record(message: str, *args, exc_info=None, **extra) -> dict:  # noqa: ANN001
    record = logging.LogRecord("recalld.test", logging.ERROR, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return orjson.loads(JsonFormatter().format(record))


def test_formatter_takes_ids_from_the_context_and_redacts_exceptions():
    tokens = REQUEST_ID.set("req-1"), AGENT_ID.set("agent-x"), RUN_ID.set("run-y")
    try:
        try:
            raise RuntimeError(
                "(sqlite3.IntegrityError) UNIQUE failed\n[SQL: INSERT INTO api_keys VALUES (?)]\n"
                "[parameters: ('sk-live-abcdefghijklmnop',)]\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz"
            )
        except RuntimeError:
            line = format_record("saving %s failed", "key", exc_info=sys.exc_info(), shard=3)
    finally:
        for var, token in zip((REQUEST_ID, AGENT_ID, RUN_ID), tokens, strict=True):
            var.reset(token)
    assert line["message"] == "saving key failed" and line["level"] == "error" and line["logger"] == "recalld.test"
    assert (line["request_id"], line["agent_id"], line["run_id"]) == ("req-1", "agent-x", "run-y")
    assert line["shard"] == 3  # fields given with extra=
    assert "Traceback" in line["exc"] and "RuntimeError" in line["exc"] and "INSERT INTO api_keys" in line["exc"]
    assert "abcdefghijklmnop" not in line["exc"]
    assert "trace_id" not in line  # no span is current


def test_formatter_leaves_out_ids_outside_a_request():
    line = format_record("idle")
    assert not {"request_id", "agent_id", "run_id"} & line.keys()


def test_redact_masks_keys_tokens_and_url_passwords_but_keeps_text():
    text = redact("api_key=abc123secret url=postgresql://app:hunter2@db/x OPENAI sk-proj-0123456789abcdef ok")
    assert "abc123secret" not in text and "hunter2" not in text and "0123456789abcdef" not in text
    assert "postgresql://app:[redacted]@db/x" in text and text.endswith(" ok")
    assert redact("a basic understanding of prompt_tokens=12") == "a basic understanding of prompt_tokens=12"


def test_text_format_uses_the_redacting_text_formatter_for_uvicorn_too():
    config = logging_config("text", "warning")
    assert config["formatters"]["recalld"] == {"()": TextFormatter}
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.access"] == {"handlers": [], "level": "WARNING", "propagate": True}
    assert logging_config("json", "info")["formatters"]["recalld"] == {"()": JsonFormatter}


def test_agent_id_is_read_from_the_path_only_when_well_formed():
    agent_id = "agent-" + str(uuid.uuid4())
    assert agent_id_from_path(f"/v1/agents/{agent_id}/messages") == agent_id
    assert agent_id_from_path(f"/v1/agents/{agent_id}") == agent_id
    assert agent_id_from_path("/v1/agents/agent-nope/messages") is None
    assert agent_id_from_path("/v1/blocks/") is None

