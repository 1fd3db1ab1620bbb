"""Per-organization tool limits (contract R23: the sandbox's limits are settings, per-org overridable): a real
`recalld serve` with the bubblewrap sandbox, two organizations running the same tool under different limits."""

from __future__ import annotations

import json
import time

import pytest

from tests.security.test_limits import SLEEPER, call, limits_env, new_org, sdk, user
from tests.servers import RecalldServer

MODEL = "openai/gpt-4o-mini"

ALLOCATOR = '''
def allocate(mb: int) -> str:
    """Holds mb MB of memory.

    Args:
        mb: how many MB

    Returns:
        str: done
    """
    held = bytearray(mb * 1024 * 1024)
    return f"held {len(held) // (1024 * 1024)} MB"
'''


@pytest.fixture(scope="module")
def toollimits_server(tmp_path_factory, fake_openai):
    tmp_dir = tmp_path_factory.mktemp("recalld-toollimits")
    server = RecalldServer(env=limits_env(tmp_dir, fake_openai, RECALLD_TOOL_TIMEOUT_MAX_S="30",
                                          RECALLD_TOOL_MEMORY_MAX_MB="1024", RECALLD_TOOL_MAX_PROCS_MAX="64"))
    server.start(tmp_dir)
    try:
        yield server
    finally:
        server.stop()


def _tool_return(server: RecalldServer, key: str, source: str, message: str):
    client = sdk(server, key)
    tool = client.tools.create(source_code=source)
    agent = client.agents.create(model=MODEL, tool_ids=[tool.id])
    started = time.monotonic()
    response = client.agents.messages.create(agent.id, messages=[user(message)])
    returns = [m for m in response.messages if m.message_type == "tool_return_message"]
    return returns[0], time.monotonic() - started


def test_an_org_with_a_1s_tool_timeout_has_its_tool_stopped_while_another_org_runs_past_it(toollimits_server):
    _, short_key = new_org(toollimits_server, "--tool-timeout-s", "1")
    _, default_key = new_org(toollimits_server)
    stopped, stopped_after = _tool_return(toollimits_server, short_key, SLEEPER, call("nap", seconds=3))
    assert stopped.status == "error" and "longer than 1 s" in stopped.tool_return, stopped.tool_return
    assert stopped_after < 2.5, stopped_after
    rested, rested_after = _tool_return(toollimits_server, default_key, SLEEPER, call("nap", seconds=3))
    assert rested.status == "success" and "rested" in rested.tool_return
    assert rested_after >= 3


def test_an_org_with_a_low_memory_override_fails_an_allocation_the_default_allows(toollimits_server):
    _, small_key = new_org(toollimits_server, "--tool-memory-mb", "64")
    _, default_key = new_org(toollimits_server)
    failed, _ = _tool_return(toollimits_server, small_key, ALLOCATOR, call("allocate", mb=100))
    assert failed.status == "error" and "MemoryError" in failed.tool_return, failed.tool_return
    held, _ = _tool_return(toollimits_server, default_key, ALLOCATOR, call("allocate", mb=100))
    assert held.status == "success" and "held 100 MB" in held.tool_return, held.tool_return


def test_tool_limit_overrides_are_shown_reset_and_refused_over_the_ceiling(toollimits_server):
    name, _ = new_org(toollimits_server)
    server = toollimits_server
    server.cli("orgs", "set-limits", "--org", name, "--tool-timeout-s", "20",
               "--tool-memory-mb", "512", "--tool-max-procs", "8")
    shown = json.loads(server.cli("orgs", "show", "--org", name, "--json").stdout)[0]
    assert (shown["limits"]["tool_timeout_s"], shown["limits"]["tool_memory_mb"], shown["limits"]["tool_max_procs"]) \
        == (20, 512, 8)
    assert shown["overridden"] == ["tool_max_procs", "tool_memory_mb", "tool_timeout_s"]
    for flag, value, ceiling in (("--tool-timeout-s", "31", "RECALLD_TOOL_TIMEOUT_MAX_S"),
                                 ("--tool-memory-mb", "1025", "RECALLD_TOOL_MEMORY_MAX_MB"),
                                 ("--tool-max-procs", "65", "RECALLD_TOOL_MAX_PROCS_MAX")):
        refused = server.cli("orgs", "set-limits", "--org", name, flag, value, check=False)
        assert refused.returncode == 1 and ceiling in refused.stderr, refused.stderr
    too_small = server.cli("orgs", "set-limits", "--org", name, "--tool-memory-mb", "8", check=False)
    assert too_small.returncode == 1 and "tool_memory_mb" in too_small.stderr
    shown = json.loads(server.cli("orgs", "show", "--org", name, "--json").stdout)[0]
    assert shown["limits"]["tool_timeout_s"] == 20 and shown["limits"]["tool_memory_mb"] == 512  # unchanged
    server.cli("orgs", "set-limits", "--org", name, "--tool-timeout-s", "default", "--tool-memory-mb", "default",
               "--tool-max-procs", "default")
    shown = json.loads(server.cli("orgs", "show", "--org", name, "--json").stdout)[0]
    assert (shown["limits"]["tool_timeout_s"], shown["limits"]["tool_memory_mb"], shown["limits"]["tool_max_procs"]) \
        == (60, 256, 32)
    assert shown["overridden"] == []
