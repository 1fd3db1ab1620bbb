"""Tools through the SDK against a running server (contract 6, rules R4–R7, R16, R18)."""

from __future__ import annotations

import json
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from letta_client import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError

# --- helpers ------------------------------------------------------------------------------------------

# Parameters of the built-ins (contract 6.3): name → (tool_type, parameters, required ones).
BUILTINS = {
    "send_message": ("letta_core", {"message"}, ["message"]),
    "conversation_search": ("letta_core", {"query", "roles", "limit", "start_date", "end_date"}, []),
    "archival_memory_insert": ("letta_core", {"content", "tags"}, ["content"]),
    "archival_memory_search": (
        "letta_core",
        {"query", "tags", "tag_match_mode", "top_k", "start_datetime", "end_datetime"},
        ["query"],
    ),
    "core_memory_append": ("letta_memory_core", {"label", "content"}, ["label", "content"]),
    "core_memory_replace": (
        "letta_memory_core",
        {"label", "old_content", "new_content"},
        ["label", "old_content", "new_content"],
    ),
    "memory_replace": (
        "letta_sleeptime_core",
        {"label", "old_string", "new_string"},
        ["label", "old_string", "new_string"],
    ),
    "memory_insert": (
        "letta_sleeptime_core",
        {"label", "new_string", "insert_line"},
        ["label", "new_string"],
    ),
    "memory_rethink": ("letta_sleeptime_core", {"label", "new_memory"}, ["label", "new_memory"]),
    "memory_finish_edits": ("letta_sleeptime_core", set(), []),
    "memory_apply_patch": ("letta_memory_core", {"label", "patch"}, ["label", "patch"]),
    "memory": (
        "letta_memory_core",
        {
            "command",
            "path",
            "file_text",
            "description",
            "old_string",
            "new_string",
            "insert_line",
            "insert_text",
            "old_path",
            "new_path",
        },
        ["command"],
    ),
}

UNKNOWN_TOOL_ID = "tool-00000000-0000-4000-8000-000000000000"
UNKNOWN_AGENT_ID = "agent-00000000-0000-4000-8000-000000000000"


def unique(prefix: str = "t") -> str:
    """A tool name no other test of the session uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def adder_source(name: str, summary: str = "Add two numbers.") -> str:
    return textwrap.dedent(
        f'''
        def {name}(a: int, b: int = 2) -> int:
            """{summary}

            Args:
                a: The first number.
                b: The second number.

            Returns:
                int: The sum.
            """
            return a + b
        '''
    ).lstrip()


def greeter_source(name: str) -> str:
    return textwrap.dedent(
        f'''
        def {name}(person: str, shout: bool) -> str:
            """Greet someone.

            Args:
                person: Who to greet.
                shout: Whether to shout.
            """
            return person.upper() if shout else person
        '''
    ).lstrip()


def dump(tool) -> dict:
    return tool.model_dump(by_alias=True)


def custom_tool_ids(client) -> set[str]:
    return {t.id for t in client.tools.list(tool_types=["custom"], limit=1000).items}


def agent_tool_ids(client, agent_id: str) -> list[str]:
    return [t.id for t in client.agents.tools.list(agent_id, limit=1000).items]


def raw(server, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", timeout=30, **kw)


@pytest.fixture
def tool(client):
    """A fresh custom tool."""
    return client.tools.create(source_code=adder_source(unique()), tags=["fixture"])


@pytest.fixture
def agent(client):
    state = client.agents.create(model="openai/gpt-4o-mini", name=unique("agent"))
    yield state
    try:
        client.agents.delete(state.id)
    except NotFoundError:
        pass


# --- built-ins ----------------------------------------------------------------------------------------


def test_builtin_tools_exist_after_start(client):
    listed = {t.name: t for t in client.tools.list(names=list(BUILTINS), limit=1000)}
    assert set(listed) == set(BUILTINS)
    assert {name: t.tool_type for name, t in listed.items()} == {n: b[0] for n, b in BUILTINS.items()}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_tool_has_contract_parameters(client, name):
    _, params, required = BUILTINS[name]
    (builtin,) = client.tools.list(name=name).items
    schema = builtin.json_schema
    assert schema["name"] == name
    assert schema["description"]
    assert schema["parameters"]["type"] == "object"
    assert set(schema["parameters"]["properties"]) == params
    assert schema["parameters"]["required"] == required
    for prop in schema["parameters"]["properties"].values():
        assert "type" in prop and prop.get("description")


def test_builtin_tool_defaults(client):
    (builtin,) = client.tools.list(name="memory_replace").items
    assert builtin.id.startswith("tool-")
    assert builtin.return_char_limit == 50_000
    assert builtin.enable_parallel_execution is False


def test_create_tool_with_builtin_name_is_409_and_keeps_builtin(client):
    (before,) = client.tools.list(name="send_message").items
    source = adder_source("send_message")
    with pytest.raises(ConflictError):
        client.tools.create(source_code=source)
    assert dump(client.tools.retrieve(before.id)) == dump(before)


def test_upsert_with_builtin_name_is_409_and_keeps_builtin(client):
    (before,) = client.tools.list(name="memory_insert").items
    with pytest.raises(ConflictError):
        client.tools.upsert(source_code=adder_source("memory_insert"))
    assert dump(client.tools.retrieve(before.id)) == dump(before)


def test_update_builtin_source_is_400_and_keeps_builtin(client):
    (before,) = client.tools.list(name="core_memory_append").items
    with pytest.raises(BadRequestError):
        client.tools.update(before.id, source_code=adder_source("core_memory_append"))
    assert dump(client.tools.retrieve(before.id)) == dump(before)


# --- create -------------------------------------------------------------------------------------------

RICH_SOURCE = '''
from typing import Literal, Optional


def helper(x: int) -> int:
    """Not the tool: the tool is the last function."""
    return x


def {name}(
    agent_state,
    query: str,
    count: int,
    ratio: float,
    flag: bool,
    options: dict,
    words: list[str],
    mode: Literal["fast", "slow"],
    note: Optional[str],
    limit: int = 5,
) -> str:
    """Search the things.

    Looks through every thing it knows about.

    Args:
        query: What to look for.
        count: How many to return.
        ratio: A weight between 0 and 1.
        flag: Whether to be strict.
        options: Extra settings.
        words: Words that must appear.
        mode: How hard to try.
        note: A note to attach.
        limit: At most this many.

    Returns:
        str: What was found.
    """
    return query
'''


def test_create_tool_derives_schema_from_last_function(client):
    name = unique()
    created = client.tools.create(source_code=RICH_SOURCE.replace("{name}", name))
    assert created.name == name
    assert created.json_schema == {
        "name": name,
        "description": "Search the things.\n\nLooks through every thing it knows about.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "count": {"type": "integer", "description": "How many to return."},
                "ratio": {"type": "number", "description": "A weight between 0 and 1."},
                "flag": {"type": "boolean", "description": "Whether to be strict."},
                "options": {"type": "object", "description": "Extra settings."},
                "words": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Words that must appear.",
                },
                "mode": {"type": "string", "enum": ["fast", "slow"], "description": "How hard to try."},
                "note": {"type": "string", "description": "A note to attach."},
                "limit": {"type": "integer", "description": "At most this many."},
            },
            "required": ["query", "count", "ratio", "flag", "options", "words", "mode"],
        },
    }


def test_create_tool_description_is_docstring_leading_text(client):
    created = client.tools.create(source_code=adder_source(unique(), summary="Adds a and b together."))
    assert created.description == "Adds a and b together."


def test_create_tool_keeps_source_and_tags_verbatim(client):
    name = unique()
    source = adder_source(name) + "\n\n# trailing comment  \n"
    tags = ["Math", "b tag", "math", "ünïcode"]
    created = client.tools.create(source_code=source, tags=tags)
    got = client.tools.retrieve(created.id)
    assert got.source_code == source
    assert got.tags == tags


def test_create_tool_is_custom_with_defaults(client):
    created = client.tools.create(source_code=adder_source(unique()))
    assert created.id.startswith("tool-")
    assert created.tool_type == "custom"
    assert created.source_type == "python"
    assert created.return_char_limit == 50_000
    assert created.enable_parallel_execution is False
    assert dump(client.tools.retrieve(created.id)) == dump(created)


def test_create_tool_emits_metadata_with_underscore_and_tool_hash(client, server):
    created = client.tools.create(source_code=adder_source(unique()))
    body = raw(server, "GET", f"/v1/tools/{created.id}").json()
    assert "metadata_" in body
    assert isinstance(body["metadata_"]["tool_hash"], str) and body["metadata_"]["tool_hash"]
    assert created.metadata == body["metadata_"]


def test_create_tool_keeps_return_char_limit_and_flags(client):
    created = client.tools.create(
        source_code=adder_source(unique()),
        return_char_limit=1234,
        enable_parallel_execution=True,
        default_requires_approval=True,
    )
    got = client.tools.retrieve(created.id)
    assert (got.return_char_limit, got.enable_parallel_execution, got.default_requires_approval) == (
        1234,
        True,
        True,
    )


TOOL_FIELDS = {
    "id",
    "tool_type",
    "description",
    "source_type",
    "name",
    "tags",
    "source_code",
    "json_schema",
    "args_json_schema",
    "return_char_limit",
    "pip_requirements",
    "npm_requirements",
    "default_requires_approval",
    "enable_parallel_execution",
    "created_by_id",
    "last_updated_by_id",
    "metadata_",
    "project_id",
}


def test_tool_json_has_every_field_nulls_included(client, server, tool):
    body = raw(server, "GET", f"/v1/tools/{tool.id}").json()
    assert TOOL_FIELDS <= set(body)
    assert body["args_json_schema"] is None
    assert body["created_by_id"] == body["last_updated_by_id"] == "user-00000000-0000-4000-8000-000000000000"


def test_create_tool_with_json_schema_uses_it(client):
    name = unique()
    schema = {
        "name": name,
        "description": "Given, not derived.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "description": "A."}},
            "required": ["a"],
        },
    }
    created = client.tools.create(source_code=adder_source(name), json_schema=schema)
    assert client.tools.retrieve(created.id).json_schema == schema
    assert created.name == name


@pytest.mark.parametrize("schema", [{"description": "no name"}, {"name": 5}, {"name": "has space"}])
def test_create_tool_with_unusable_json_schema_is_400_and_creates_nothing(client, schema):
    before = custom_tool_ids(client)
    with pytest.raises(BadRequestError):
        client.tools.create(source_code=adder_source(unique()), json_schema=schema)
    assert custom_tool_ids(client) == before


def test_create_tool_with_non_ascii_function_name_is_400(client):
    name = "caf\u00e9_" + uuid.uuid4().hex[:8]
    with pytest.raises(BadRequestError):
        client.tools.create(source_code=adder_source(name))
    assert client.tools.list(name=name).items == []


def test_concurrent_creates_of_one_name_make_one_tool(client):
    name = unique()

    def create(_):
        try:
            return client.tools.create(source_code=adder_source(name)).id
        except ConflictError:
            return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(8)))
    created = [r for r in results if r]
    assert len(created) == 1
    assert [t.id for t in client.tools.list(name=name)] == created


def test_concurrent_upserts_of_one_name_all_succeed_with_one_tool(client):
    name = unique()
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: client.tools.upsert(source_code=adder_source(name)).id, range(8)))
    assert len(ids) == 1
    assert [t.id for t in client.tools.list(name=name)] == list(ids)


def test_create_tool_with_taken_name_is_409_and_keeps_old(client, tool):
    with pytest.raises(ConflictError):
        client.tools.create(source_code=greeter_source(tool.name).replace("Greet", "Other"), tags=["new"])
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)
    assert [t.id for t in client.tools.list(name=tool.name)] == [tool.id]


def test_create_tool_with_name_over_48_chars_is_400(client):
    name = "n" * 49
    with pytest.raises(BadRequestError):
        client.tools.create(source_code=adder_source(name))
    assert client.tools.list(name=name).items == []


def test_create_tool_with_48_char_name_is_fine(client):
    name = unique("n").ljust(48, "x")
    assert client.tools.create(source_code=adder_source(name)).name == name


BAD_SOURCES = {
    "syntax_error": "def {name}(a: int) -> int\n    return a\n",
    "no_function": "{name} = 5\nclass Thing:\n    pass\n",
    "missing_annotation": (
        'def {name}(a) -> int:\n    """Do it.\n\n    Args:\n        a: The value.\n    """\n    return a\n'
    ),
    "missing_arg_description": (
        'def {name}(a: int, b: int) -> int:\n    """Do it.\n\n    Args:\n        a: The value.\n    """\n'
        "    return a\n"
    ),
    "no_docstring": "def {name}(a: int) -> int:\n    return a\n",
    "unsupported_type": (
        'def {name}(a: set[int]) -> int:\n    """Do it.\n\n    Args:\n        a: The values.\n    """\n'
        "    return 1\n"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_create_tool_with_bad_source_is_400_and_creates_nothing(client, case):
    name = unique()
    before = custom_tool_ids(client)
    with pytest.raises(BadRequestError) as err:
        client.tools.create(source_code=BAD_SOURCES[case].replace("{name}", name))
    assert err.value.body["detail"].startswith("Failed to derive json schema")
    assert client.tools.list(name=name).items == []
    assert custom_tool_ids(client) == before


def test_upsert_with_bad_source_is_400_and_keeps_tool(client, tool):
    bad = BAD_SOURCES["missing_arg_description"].replace("{name}", tool.name)
    with pytest.raises(BadRequestError):
        client.tools.upsert(source_code=bad)
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_create_tool_with_unknown_field_is_422_and_creates_nothing(client):
    name = unique()
    with pytest.raises(UnprocessableEntityError):
        client.tools.create(source_code=adder_source(name), extra_body={"color": "blue"})
    assert client.tools.list(name=name).items == []


def test_create_tool_without_source_is_422(server):
    resp = raw(server, "POST", "/v1/tools/", json={"description": "no code"})
    assert resp.status_code == 422
    assert isinstance(resp.json()["detail"], str)


def test_create_tool_with_malformed_json_is_422(server):
    headers = {"content-type": "application/json"}
    resp = raw(server, "POST", "/v1/tools/", content=b'{"source_code": "def f(', headers=headers)
    assert resp.status_code == 422


@pytest.mark.parametrize(
    "field, value",
    [
        ("source_code", 5),
        ("tags", "solo"),
        ("tags", [1, 2]),
        ("return_char_limit", "100"),
        ("return_char_limit", 10.5),
        ("description", ["x"]),
        ("enable_parallel_execution", "yes"),
    ],
)
def test_create_tool_with_wrong_json_type_is_422_and_creates_nothing(client, server, field, value):
    name = unique()
    body = {"source_code": adder_source(name), field: value}
    resp = raw(server, "POST", "/v1/tools/", json=body)
    assert resp.status_code == 422, resp.text
    assert client.tools.list(name=name).items == []


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_create_tool_with_unstorable_text_is_4xx_and_creates_nothing(client, server, text):
    name = unique()
    body = json.dumps({"source_code": adder_source(name), "description": text}).encode()
    resp = raw(server, "POST", "/v1/tools/", content=body, headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    assert client.tools.list(name=name).items == []


def test_create_tool_with_nul_in_source_is_4xx_and_creates_nothing(client, server):
    name = unique()
    source = adder_source(name).replace("Add two", "Add\x00two")
    resp = raw(server, "POST", "/v1/tools/", json={"source_code": source})
    assert 400 <= resp.status_code < 500, resp.text
    assert client.tools.list(name=name).items == []


@pytest.mark.parametrize("limit", [0, -1, 1_000_001, 2**70])
def test_create_tool_with_return_char_limit_out_of_range_is_422_and_creates_nothing(client, limit):
    name = unique()
    with pytest.raises(UnprocessableEntityError):
        client.tools.create(source_code=adder_source(name), return_char_limit=limit)
    assert client.tools.list(name=name).items == []


@pytest.mark.parametrize("limit", [1, 1_000_000])
def test_create_tool_accepts_return_char_limit_bounds(client, limit):
    created = client.tools.create(source_code=adder_source(unique()), return_char_limit=limit)
    assert client.tools.retrieve(created.id).return_char_limit == limit


# --- upsert -------------------------------------------------------------------------------------------


def test_upsert_replaces_tool_with_same_id_and_new_schema(client, tool):
    new_source = greeter_source(tool.name)
    replaced = client.tools.upsert(source_code=new_source, tags=["replaced"])
    assert replaced.id == tool.id
    got = client.tools.retrieve(tool.id)
    assert got.source_code == new_source
    assert got.tags == ["replaced"]
    assert got.description == "Greet someone."
    assert set(got.json_schema["parameters"]["properties"]) == {"person", "shout"}
    assert got.json_schema["parameters"]["required"] == ["person", "shout"]
    assert [t.id for t in client.tools.list(name=tool.name)] == [tool.id]


def test_upsert_with_free_name_creates_tool(client):
    name = unique()
    created = client.tools.upsert(source_code=adder_source(name))
    assert created.name == name
    assert client.tools.retrieve(created.id).tool_type == "custom"


@pytest.mark.parametrize("limit", [0, 1_000_001])
def test_upsert_with_return_char_limit_out_of_range_is_422_and_keeps_tool(client, tool, limit):
    with pytest.raises(UnprocessableEntityError):
        client.tools.upsert(source_code=greeter_source(tool.name), return_char_limit=limit)
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


# --- retrieve / update --------------------------------------------------------------------------------


def test_retrieve_tool_returns_created_tool(client, tool):
    got = client.tools.retrieve(tool.id)
    assert dump(got) == dump(tool)


def test_retrieve_unknown_tool_is_404(client):
    with pytest.raises(NotFoundError):
        client.tools.retrieve(UNKNOWN_TOOL_ID)


@pytest.mark.parametrize("bad_id", ["tool-nope", "agent-00000000-0000-4000-8000-000000000000", "x" * 300])
def test_malformed_tool_id_in_path_is_422(client, bad_id):
    with pytest.raises(UnprocessableEntityError):
        client.tools.retrieve(bad_id)
    with pytest.raises(UnprocessableEntityError):
        client.tools.update(bad_id, description="x")
    with pytest.raises(UnprocessableEntityError):
        client.tools.delete(bad_id)


def test_update_tool_changes_only_fields_sent(client, tool):
    updated = client.tools.update(tool.id, description="A new description.", tags=["x", "y"])
    got = client.tools.retrieve(tool.id)
    assert dump(got) == dump(updated)
    assert got.description == "A new description."
    assert got.tags == ["x", "y"]
    assert (got.source_code, got.json_schema, got.name) == (tool.source_code, tool.json_schema, tool.name)


def test_update_tool_metadata(client, tool):
    client.tools.update(tool.id, metadata={"owner": "team-a"})
    assert client.tools.retrieve(tool.id).metadata == {"owner": "team-a"}


def test_update_tool_source_rederives_schema(client, tool):
    new_name = unique()
    updated = client.tools.update(tool.id, source_code=greeter_source(new_name))
    got = client.tools.retrieve(tool.id)
    assert dump(got) == dump(updated)
    assert got.name == new_name
    assert got.json_schema["name"] == new_name
    assert got.json_schema["parameters"]["required"] == ["person", "shout"]
    assert got.source_code == greeter_source(new_name)


def test_update_tool_with_bad_source_is_400_and_keeps_tool(client, tool):
    bad = BAD_SOURCES["missing_annotation"].replace("{name}", tool.name)
    with pytest.raises(BadRequestError) as err:
        client.tools.update(tool.id, source_code=bad)
    assert err.value.body["detail"].startswith("Failed to derive json schema")
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_update_tool_source_to_taken_name_is_409_and_keeps_tool(client, tool):
    other = client.tools.create(source_code=adder_source(unique()))
    with pytest.raises(ConflictError):
        client.tools.update(tool.id, source_code=greeter_source(other.name))
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)
    assert dump(client.tools.retrieve(other.id)) == dump(other)


def test_concurrent_renames_to_one_name_leave_one_winner(client):
    tools = [client.tools.create(source_code=adder_source(unique())) for _ in range(6)]
    target = unique()

    def rename(tool):
        try:
            client.tools.update(tool.id, source_code=greeter_source(target))
            return tool.id
        except ConflictError:
            return None

    with ThreadPoolExecutor(6) as pool:
        winners = [r for r in pool.map(rename, tools) if r]
    assert len(winners) == 1
    assert [t.id for t in client.tools.list(name=target)] == winners


@pytest.mark.parametrize("limit", [1, 1_000_000])
def test_update_tool_accepts_return_char_limit_bounds(client, tool, limit):
    client.tools.update(tool.id, return_char_limit=limit)
    assert client.tools.retrieve(tool.id).return_char_limit == limit


@pytest.mark.parametrize("limit", [0, -5, 1_000_001])
def test_update_tool_with_return_char_limit_out_of_range_is_422_and_keeps_tool(client, tool, limit):
    with pytest.raises(UnprocessableEntityError):
        client.tools.update(tool.id, return_char_limit=limit)
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_partial_update_with_one_bad_field_changes_nothing(client, server, tool):
    body = {"description": "changed", "return_char_limit": 0}
    resp = raw(server, "PATCH", f"/v1/tools/{tool.id}", json=body)
    assert resp.status_code == 422
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_update_tool_with_unknown_field_is_422_and_keeps_tool(client, tool):
    with pytest.raises(UnprocessableEntityError):
        client.tools.update(tool.id, description="changed", extra_body={"color": "blue"})
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_update_tool_with_wrong_json_type_is_422_and_keeps_tool(client, server, tool):
    resp = raw(server, "PATCH", f"/v1/tools/{tool.id}", json={"tags": "solo"})
    assert resp.status_code == 422
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_update_unknown_tool_is_404(client):
    with pytest.raises(NotFoundError):
        client.tools.update(UNKNOWN_TOOL_ID, description="x")


# --- delete -------------------------------------------------------------------------------------------


def test_delete_tool_then_retrieve_is_404(client, tool):
    assert client.tools.delete(tool.id) is None
    with pytest.raises(NotFoundError):
        client.tools.retrieve(tool.id)
    assert client.tools.list(name=tool.name).items == []


def test_delete_tool_twice_is_404(client, tool):
    client.tools.delete(tool.id)
    with pytest.raises(NotFoundError):
        client.tools.delete(tool.id)


def test_deleted_tool_name_can_be_reused(client, tool):
    client.tools.delete(tool.id)
    again = client.tools.create(source_code=adder_source(tool.name))
    assert again.id != tool.id


def test_delete_attached_tool_detaches_it(client, agent, tool):
    client.agents.tools.attach(tool.id, agent_id=agent.id)
    client.tools.delete(tool.id)
    assert tool.id not in agent_tool_ids(client, agent.id)
    assert {t.name for t in client.agents.retrieve(agent.id, include=["agent.tools"]).tools} == {
        "conversation_search",
        "memory_insert",
        "memory_replace",
    }


# --- list ---------------------------------------------------------------------------------------------


@pytest.fixture
def family(client):
    """Five custom tools sharing a unique name prefix, in creation order."""
    prefix = unique("fam")
    return [client.tools.create(source_code=adder_source(f"{prefix}_{i}"), tags=[prefix]) for i in range(5)]


def family_prefix(family) -> str:
    return family[0].name.rsplit("_", 1)[0]


def test_list_filters_by_name(client, family):
    assert [t.id for t in client.tools.list(name=family[2].name)] == [family[2].id]


def test_list_by_unknown_name_is_empty(client):
    assert client.tools.list(name=unique()).items == []


def test_list_filters_by_names(client, family):
    got = client.tools.list(names=[family[0].name, family[3].name, unique()]).items
    assert {t.id for t in got} == {family[0].id, family[3].id}


def test_list_names_accepts_comma_separated_values(server, family):
    resp = raw(server, "GET", "/v1/tools/", params={"names": f"{family[1].name},{family[4].name}"})
    assert resp.status_code == 200
    assert {t["id"] for t in resp.json()} == {family[1].id, family[4].id}


def test_list_filters_by_tool_ids(client, family):
    got = client.tools.list(tool_ids=[family[1].id, family[2].id, UNKNOWN_TOOL_ID]).items
    assert {t.id for t in got} == {family[1].id, family[2].id}


def test_list_search_matches_name_substring_case_insensitively(client, family):
    got = client.tools.list(search=family_prefix(family).upper(), limit=1000).items
    assert {t.id for t in got} == {t.id for t in family}


def test_list_search_treats_wildcards_literally(client, family):
    assert client.tools.list(search=family_prefix(family) + "%").items == []
    assert client.tools.list(search="%").items == []


def test_list_search_treats_underscore_literally(client, family):
    assert client.tools.list(search=family_prefix(family).replace("_", "x")).items == []


def test_list_tool_types_accepts_comma_separated_values(server):
    params = {"tool_types": "letta_core,letta_memory_core", "limit": 1000}
    resp = raw(server, "GET", "/v1/tools/", params=params)
    assert resp.status_code == 200
    assert {t["name"] for t in resp.json()} == {
        n for n, b in BUILTINS.items() if b[0] in ("letta_core", "letta_memory_core")
    }


def test_list_with_invalid_comma_separated_tool_type_is_400(server):
    resp = raw(server, "GET", "/v1/tools/", params={"tool_types": "letta_core,bogus"})
    assert resp.status_code == 400


@pytest.mark.parametrize("param", ["name", "names", "search", "tool_ids", "after"])
def test_list_with_nul_in_query_is_4xx(server, param):
    resp = raw(server, "GET", "/v1/tools/", params={param: "a\x00b"})
    assert 400 <= resp.status_code < 500, resp.text


def test_list_filters_by_tool_types(client, family):
    got = client.tools.list(tool_types=["letta_sleeptime_core"], limit=1000).items
    assert {t.name for t in got} == {n for n, b in BUILTINS.items() if b[0] == "letta_sleeptime_core"}
    custom = client.tools.list(tool_types=["custom"], limit=1000).items
    assert {t.id for t in family} <= {t.id for t in custom}
    assert all(t.tool_type == "custom" for t in custom)


def test_list_tool_types_accepts_several(client):
    got = client.tools.list(tool_types=["letta_core", "letta_memory_core"], limit=1000).items
    assert {t.name for t in got} == {
        n for n, b in BUILTINS.items() if b[0] in ("letta_core", "letta_memory_core")
    }


def test_list_excludes_tool_types(client, family):
    got = client.tools.list(exclude_tool_types=["custom"], limit=1000).items
    assert {t.name for t in got} == set(BUILTINS)


def test_list_return_only_letta_tools(client, family):
    got = client.tools.list(return_only_letta_tools=True, limit=1000).items
    assert {t.name for t in got} == set(BUILTINS)


@pytest.mark.parametrize("param", ["tool_types", "exclude_tool_types"])
def test_list_with_invalid_tool_type_is_400(client, param):
    with pytest.raises(BadRequestError):
        client.tools.list(**{param: ["not_a_type"]})


@pytest.mark.parametrize("limit", [0, -1])
def test_list_with_non_positive_limit_is_422(client, limit):
    with pytest.raises(UnprocessableEntityError):
        client.tools.list(limit=limit)


@pytest.mark.parametrize(
    "params", [{"limit": "abc"}, {"return_only_letta_tools": "maybe"}, {"order": "sideways"}]
)
def test_list_with_wrong_query_type_is_422(server, params):
    assert raw(server, "GET", "/v1/tools/", params=params).status_code == 422


def test_list_with_limit_over_1000_is_served(client, family):
    got = client.tools.list(limit=5000, search=family_prefix(family)).items
    assert len(got) == len(family)


def test_list_with_64_bit_overflowing_limit_is_not_5xx(server):
    resp = raw(server, "GET", "/v1/tools/", params={"limit": str(2**70)})
    assert resp.status_code in (200, 422), resp.text


def test_list_default_order_is_newest_first(client, family):
    got = client.tools.list(search=family_prefix(family)).items
    assert [t.id for t in got] == [t.id for t in reversed(family)]


def test_list_ascending_is_creation_order(client, family):
    got = client.tools.list(search=family_prefix(family), order="asc").items
    assert [t.id for t in got] == [t.id for t in family]


def test_list_limit_and_after_cursor_ascending(client, family):
    prefix = family_prefix(family)
    first = client.tools.list(search=prefix, order="asc", limit=2).items
    second = client.tools.list(search=prefix, order="asc", limit=2, after=first[-1].id).items
    assert [t.id for t in first + second] == [t.id for t in family[:4]]


def test_list_limit_and_after_cursor_descending(client, family):
    prefix = family_prefix(family)
    first = client.tools.list(search=prefix, order="desc", limit=2).items
    second = client.tools.list(search=prefix, order="desc", limit=2, after=first[-1].id).items
    assert [t.id for t in first + second] == [t.id for t in reversed(family[1:])]


# The SDK pages a `before=` listing on with before=<first item of the page>, so a page must hold the items
# nearest the cursor.
def test_list_before_cursor_returns_the_nearest_items(client, family):
    prefix = family_prefix(family)
    got = client.tools.list(search=prefix, order="asc", limit=2, before=family[3].id).items
    assert [t.id for t in got] == [family[1].id, family[2].id]


def test_list_with_unknown_cursor_lists_from_start(client, family):
    got = client.tools.list(search=family_prefix(family), order="asc", after=UNKNOWN_TOOL_ID).items
    assert [t.id for t in got] == [t.id for t in family]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_auto_pagination_sees_every_tool_once(client, family, order):
    everything = [t.id for t in client.tools.list(limit=1000, order=order).items]
    paged = [t.id for t in client.tools.list(limit=2, order=order)]
    assert paged == everything
    assert len(set(paged)) == len(paged)
    assert {t.id for t in family} <= set(paged)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_auto_pagination_with_before_sees_every_earlier_tool_once(client, family, order):
    prefix = family_prefix(family)
    everything = [t.id for t in client.tools.list(search=prefix, order=order).items]
    paged = [t.id for t in client.tools.list(search=prefix, order=order, limit=2, before=everything[-1])]
    assert sorted(paged) == sorted(everything[:-1])


# --- agent tools --------------------------------------------------------------------------------------


def test_agent_tools_lists_base_tools(client, agent):
    got = client.agents.tools.list(agent.id).items
    assert {t.name for t in got} == {"conversation_search", "memory_insert", "memory_replace"}


def test_attach_tool_to_agent(client, agent, tool):
    assert client.agents.tools.attach(tool.id, agent_id=agent.id) is None
    assert tool.id in agent_tool_ids(client, agent.id)
    state = client.agents.retrieve(agent.id, include=["agent.tools"])
    assert tool.id in {t.id for t in state.tools}


def test_attach_tool_twice_is_fine(client, agent, tool):
    client.agents.tools.attach(tool.id, agent_id=agent.id)
    client.agents.tools.attach(tool.id, agent_id=agent.id)
    assert agent_tool_ids(client, agent.id).count(tool.id) == 1


def test_agent_tools_list_default_limit_is_10(client, agent):
    for _ in range(9):
        created = client.tools.create(source_code=adder_source(unique()))
        client.agents.tools.attach(created.id, agent_id=agent.id)
    assert len(agent_tool_ids(client, agent.id)) == 12
    assert len(client.agents.tools.list(agent.id).items) == 10
    assert len(list(client.agents.tools.list(agent.id, limit=5))) == 12


def test_agent_tools_list_orders_and_pages(client, agent, family):
    for t in family:
        client.agents.tools.attach(t.id, agent_id=agent.id)
    asc = [t.id for t in client.agents.tools.list(agent.id, order="asc", limit=100).items]
    desc = [t.id for t in client.agents.tools.list(agent.id, order="desc", limit=100).items]
    assert desc == list(reversed(asc))
    assert asc[-5:] == [t.id for t in family]
    assert [t.id for t in client.agents.tools.list(agent.id, order="desc", limit=2)] == desc


def test_attach_unknown_tool_is_404_and_leaves_agent_unchanged(client, agent):
    before = agent_tool_ids(client, agent.id)
    with pytest.raises(NotFoundError):
        client.agents.tools.attach(UNKNOWN_TOOL_ID, agent_id=agent.id)
    assert agent_tool_ids(client, agent.id) == before


def test_attach_to_unknown_agent_is_404(client, tool):
    with pytest.raises(NotFoundError):
        client.agents.tools.attach(tool.id, agent_id=UNKNOWN_AGENT_ID)


def test_agent_tools_of_unknown_agent_is_404(client):
    with pytest.raises(NotFoundError):
        client.agents.tools.list(UNKNOWN_AGENT_ID)


def test_attach_with_malformed_ids_is_422(client, agent, tool):
    with pytest.raises(UnprocessableEntityError):
        client.agents.tools.attach("tool-nope", agent_id=agent.id)
    with pytest.raises(UnprocessableEntityError):
        client.agents.tools.attach(tool.id, agent_id="agent-nope")
    with pytest.raises(UnprocessableEntityError):
        client.agents.tools.detach("tool-nope", agent_id=agent.id)


def test_detach_tool_from_agent(client, agent, tool):
    client.agents.tools.attach(tool.id, agent_id=agent.id)
    assert client.agents.tools.detach(tool.id, agent_id=agent.id) is None
    assert tool.id not in agent_tool_ids(client, agent.id)
    assert client.tools.retrieve(tool.id).id == tool.id  # the tool itself stays


def test_detach_base_tool_from_agent(client, agent):
    (search,) = [t for t in client.agents.tools.list(agent.id).items if t.name == "conversation_search"]
    client.agents.tools.detach(search.id, agent_id=agent.id)
    assert {t.name for t in client.agents.tools.list(agent.id).items} == {"memory_insert", "memory_replace"}


def test_detach_unattached_tool_is_404_and_leaves_agent_unchanged(client, agent, tool):
    before = agent_tool_ids(client, agent.id)
    with pytest.raises(NotFoundError):
        client.agents.tools.detach(tool.id, agent_id=agent.id)
    assert agent_tool_ids(client, agent.id) == before


# --- other organizations ------------------------------------------------------------------------------


def test_tool_of_another_org_is_404_to_retrieve(other_org_client, tool):
    with pytest.raises(NotFoundError):
        other_org_client.tools.retrieve(tool.id)


def test_tool_of_another_org_is_404_to_update_and_unchanged(client, other_org_client, tool):
    with pytest.raises(NotFoundError):
        other_org_client.tools.update(tool.id, description="hijacked")
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_tool_of_another_org_is_404_to_delete_and_kept(client, other_org_client, tool):
    with pytest.raises(NotFoundError):
        other_org_client.tools.delete(tool.id)
    assert client.tools.retrieve(tool.id).id == tool.id


def test_tool_of_another_org_is_not_listed(other_org_client, tool):
    assert other_org_client.tools.list(name=tool.name).items == []
    assert other_org_client.tools.list(tool_ids=[tool.id]).items == []


def test_upsert_in_another_org_does_not_touch_tool(client, other_org_client, tool):
    theirs = other_org_client.tools.upsert(source_code=greeter_source(tool.name))
    assert theirs.id != tool.id
    assert dump(client.tools.retrieve(tool.id)) == dump(tool)


def test_other_org_has_its_own_builtin_tools(client, other_org_client):
    (mine,) = client.tools.list(name="send_message").items
    (theirs,) = other_org_client.tools.list(name="send_message").items
    assert theirs.id != mine.id
    assert theirs.tool_type == "letta_core"


def test_attach_tool_of_another_org_is_404_and_leaves_agent_unchanged(client, other_org_client, agent):
    foreign = other_org_client.tools.create(source_code=adder_source(unique()))
    before = agent_tool_ids(client, agent.id)
    with pytest.raises(NotFoundError):
        client.agents.tools.attach(foreign.id, agent_id=agent.id)
    assert agent_tool_ids(client, agent.id) == before


def test_attach_to_agent_of_another_org_is_404(client, other_org_client, agent, tool):
    theirs = other_org_client.tools.create(source_code=adder_source(unique()))
    with pytest.raises(NotFoundError):
        other_org_client.agents.tools.attach(theirs.id, agent_id=agent.id)
    with pytest.raises(NotFoundError):
        other_org_client.agents.tools.list(agent.id)
    assert theirs.id not in agent_tool_ids(client, agent.id)
