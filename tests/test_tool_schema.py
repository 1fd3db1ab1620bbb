"""Unit tests for tools/schema.py (contract R4) and the built-in tool table (contract 6.3)."""

from __future__ import annotations

import pytest

from recalld.errors import InvalidInput
from recalld.tools.builtin import AGENT_TYPES, BASE_TOOLS, BUILTIN_TOOLS, base_tool_rules
from recalld.tools.schema import MAX_TOOL_NAME_LEN, derive_json_schema, function_name, validate_tool_name


def _tool(params: str, args_doc: str, prelude: str = "") -> str:
    """Source of a one-function tool with the given parameter list and Args entries."""
    return (
        f"{prelude}\n"
        f"def tool({params}):\n"
        f'    """Do the thing.\n\n'
        f"    Args:\n"
        f"{args_doc}\n"
        f'    """\n'
        f"    return 1\n"
    )


def _prop(annotation: str, default: str = "") -> dict:
    """The property derived for a single parameter `x: <annotation>`."""
    source = _tool(f"x: {annotation}{default}", "        x: The x.")
    return derive_json_schema(source)["parameters"]["properties"]["x"]


def _required(params: str, names: str) -> list[str]:
    args_doc = "\n".join(f"        {name}: About {name}." for name in names.split())
    return derive_json_schema(_tool(params, args_doc))["parameters"]["required"]


def _fails(source: str) -> str:
    with pytest.raises(InvalidInput) as info:
        derive_json_schema(source)
    assert info.value.status_code == 400
    return info.value.detail


# --- overall shape ---------------------------------------------------------------------------------


def test_schema_has_name_description_and_object_parameters():
    source = '''
def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Args:
        a: First number.
        b: Second number.

    Returns:
        int: The sum.
    """
    return a + b
'''
    assert derive_json_schema(source) == {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "description": "First number."},
                "b": {"type": "integer", "description": "Second number."},
            },
            "required": ["a"],
        },
    }


def test_last_top_level_function_is_the_tool():
    source = '''
def helper(x: int):
    """Helper.

    Args:
        x: X.
    """

def main_tool(y: str):
    """Main.

    Args:
        y: Y.
    """
    def inner(z):
        return z
    return inner(y)
'''
    assert derive_json_schema(source)["name"] == "main_tool"


def test_methods_of_a_class_are_not_the_tool():
    source = '''
def tool():
    """The tool."""

class Later:
    def method(self):
        """Not a tool."""
'''
    assert derive_json_schema(source)["name"] == "tool"


def test_async_function_is_accepted():
    source = 'async def fetch(url: str):\n    """Fetch.\n\n    Args:\n        url: Where.\n    """\n'
    assert derive_json_schema(source)["parameters"]["required"] == ["url"]


def test_function_name_returns_last_function_name():
    assert function_name("def a(): pass\ndef b(): pass\n") == "b"


def test_function_without_parameters_or_docstring_has_empty_schema():
    assert derive_json_schema("def ping():\n    return 'pong'\n") == {
        "name": "ping",
        "description": "",
        "parameters": {"type": "object", "properties": {}, "required": []},
    }


# --- description ------------------------------------------------------------------------------------


def test_description_is_leading_text_without_sections():
    source = '''
def tool(x: int):
    """Summary line.

    More detail about the tool.

    Args:
        x: The x.

    Returns:
        str: Something.

    Raises:
        ValueError: Sometimes.

    Example:
        >>> tool(1)
    """
'''
    assert derive_json_schema(source)["description"] == "Summary line.\n\nMore detail about the tool."


def test_description_stops_at_returns_when_there_are_no_args():
    source = 'def tool():\n    """Summary.\n\n    Returns:\n        str: Text.\n    """\n'
    assert derive_json_schema(source)["description"] == "Summary."


def test_description_is_stripped():
    source = 'def tool():\n    """\n\n    Padded summary.   \n\n    """\n'
    assert derive_json_schema(source)["description"] == "Padded summary."


# --- Args parsing -----------------------------------------------------------------------------------


def test_multi_line_arg_description_is_joined():
    args_doc = "        x: First line\n            continues here\n            and ends here.\n        y: Y."
    props = derive_json_schema(_tool("x: int, y: int", args_doc))["parameters"]["properties"]
    assert props["x"]["description"] == "First line continues here and ends here."
    assert props["y"]["description"] == "Y."


def test_arg_with_type_in_parentheses_is_parsed():
    args_doc = "        x (int): The x.\n        y (Optional[list[str]], optional): The y."
    schema = derive_json_schema(_tool("x: int, y: list[str] | None = None", args_doc))
    props = schema["parameters"]["properties"]
    assert props["x"]["description"] == "The x."
    assert props["y"]["description"] == "The y."


def test_arg_description_may_start_on_next_line():
    args_doc = "        x:\n            The x, on its own line."
    props = derive_json_schema(_tool("x: int", args_doc))["parameters"]["properties"]
    assert props["x"]["description"] == "The x, on its own line."


def test_arguments_header_is_accepted_as_args():
    source = 'def tool(x: int):\n    """Do.\n\n    Arguments:\n        x: The x.\n    """\n'
    assert derive_json_schema(source)["parameters"]["properties"]["x"]["description"] == "The x."


def test_returns_section_after_args_is_not_an_argument():
    source = '''
def tool(x: int):
    """Do.

    Args:
        x: The x.
    Returns:
        y: Not a parameter.
    """
'''
    assert derive_json_schema(source)["parameters"]["properties"]["x"]["description"] == "The x."


# --- types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "json_type"),
    [("int", "integer"), ("float", "number"), ("str", "string"), ("bool", "boolean")],
)
def test_scalar_types_map_to_json_types(annotation, json_type):
    assert _prop(annotation) == {"type": json_type, "description": "The x."}


@pytest.mark.parametrize("annotation", ["dict", "Dict", "dict[str, int]", "Dict[str, Any]", "typing.Dict"])
def test_dict_types_map_to_object(annotation):
    assert _prop(annotation) == {"type": "object", "description": "The x."}


@pytest.mark.parametrize("annotation", ["list[str]", "List[str]", "typing.List[str]"])
def test_list_of_x_is_array_with_items(annotation):
    assert _prop(annotation) == {"type": "array", "items": {"type": "string"}, "description": "The x."}


def test_bare_list_is_array_without_items():
    assert _prop("list") == {"type": "array", "description": "The x."}


def test_nested_list_has_nested_items():
    assert _prop("list[list[int]]")["items"] == {"type": "array", "items": {"type": "integer"}}


def test_list_of_dict_items_are_objects():
    assert _prop("list[dict]")["items"] == {"type": "object"}


def test_literal_is_string_enum():
    assert _prop('Literal["a", "b"]') == {"type": "string", "enum": ["a", "b"], "description": "The x."}


def test_single_value_literal_is_enum_of_one():
    assert _prop('Literal["only"]')["enum"] == ["only"]


def test_list_of_literal_is_array_of_string_enum():
    assert _prop('list[Literal["assistant", "user", "tool"]]')["items"] == {
        "type": "string",
        "enum": ["assistant", "user", "tool"],
    }


@pytest.mark.parametrize("annotation", ["Optional[int]", "int | None", "None | int", "Union[int, None]"])
def test_optional_forms_become_the_inner_type(annotation):
    assert _prop(annotation) == {"type": "integer", "description": "The x."}


def test_optional_list_keeps_items():
    assert _prop("Optional[List[str]]") == {
        "type": "array",
        "items": {"type": "string"},
        "description": "The x.",
    }


def test_quoted_annotation_is_read_as_a_type():
    assert _prop('"list[int]"') == {"type": "array", "items": {"type": "integer"}, "description": "The x."}


def test_property_has_no_title_or_default():
    assert set(_prop("int", " = 3")) == {"type", "description"}


# --- required ---------------------------------------------------------------------------------------


def test_required_lists_params_without_default_in_signature_order():
    assert _required("b: int, a: str, c: int = 1", "b a c") == ["b", "a"]


def test_optional_without_default_is_not_required():
    assert _required("a: Optional[int], b: int | None, c: int", "a b c") == ["c"]


def test_keyword_only_params_follow_their_defaults():
    assert _required("a: int, *, b: int, c: int = 1", "a b c") == ["a", "b"]


def test_agent_state_and_self_are_skipped_without_annotation_or_doc():
    source = _tool("self, x: int, agent_state", "        x: The x.")
    params = derive_json_schema(source)["parameters"]
    assert list(params["properties"]) == ["x"]
    assert params["required"] == ["x"]


# --- errors -----------------------------------------------------------------------------------------


def test_unparsable_source_is_invalid_input():
    assert _fails("def broken(:\n").startswith("Failed to derive json schema: ")


def test_source_with_nul_byte_is_invalid_input():
    assert _fails("def tool():\n    pass\n\x00").startswith("Failed to derive json schema: ")


def test_source_without_function_is_invalid_input():
    assert "defines no function" in _fails("x = 1\nclass A:\n    def m(self): pass\n")


def test_function_name_of_source_without_function_is_invalid_input():
    with pytest.raises(InvalidInput, match="^Failed to derive json schema: "):
        function_name("x = 1\n")


def test_parameter_without_annotation_is_invalid_input():
    assert "'x' has no type annotation" in _fails(_tool("x", "        x: The x."))


def test_parameter_without_args_description_is_invalid_input():
    assert "'y'" in _fails(_tool("x: int, y: int", "        x: The x."))


def test_parameter_with_empty_args_description_is_invalid_input():
    assert "'x'" in _fails(_tool("x: int", "        x:"))


def test_parameter_of_docstringless_function_is_invalid_input():
    assert "'x'" in _fails("def tool(x: int):\n    return x\n")


@pytest.mark.parametrize(
    "annotation",
    ["set[int]", "tuple[int, str]", "Any", "MyModel", "Union[int, str]", "int | str", "None", "Literal[1.5]"],
)
def test_unsupported_type_is_invalid_input(annotation):
    detail = _fails(_tool(f"x: {annotation}", "        x: The x."))
    assert detail.startswith("Failed to derive json schema: parameter 'x' has an unsupported type")


def test_long_union_chain_is_invalid_input_not_a_crash():
    annotation = " | ".join(["int"] * 900)
    assert _fails(_tool(f"x: {annotation}", "        x: The x.")).startswith("Failed to derive json schema: ")


# --- never executes ---------------------------------------------------------------------------------


def test_top_level_system_exit_is_not_executed():
    source = 'raise SystemExit(3)\n\ndef tool(x: int):\n    """Do.\n\n    Args:\n        x: The x.\n    """\n'
    assert derive_json_schema(source)["name"] == "tool"


def test_top_level_os_exit_is_not_executed():
    source = 'import os; os._exit(1)\n\ndef tool():\n    """Do."""\n'
    assert derive_json_schema(source)["name"] == "tool"


def test_default_values_and_decorators_are_not_evaluated():
    source = (
        "@__import__('os')._exit(1)\n"
        "def tool(x: int = __import__('os')._exit(2)):\n"
        '    """Do.\n\n    Args:\n        x: The x.\n    """\n'
    )
    assert derive_json_schema(source)["parameters"]["required"] == []


def test_unimported_names_in_annotations_are_fine():
    # Optional and Literal are never imported: the source is read, not run.
    assert _prop('Optional[Literal["a"]]')["enum"] == ["a"]


# --- tool names -------------------------------------------------------------------------------------


def test_tool_name_of_max_length_is_valid():
    validate_tool_name("a" * MAX_TOOL_NAME_LEN)


def test_tool_name_over_max_length_is_invalid_input():
    with pytest.raises(InvalidInput):
        validate_tool_name("a" * (MAX_TOOL_NAME_LEN + 1))


@pytest.mark.parametrize("name", ["", "1abc", "has space", "has-dash", "class", "naïve"])
def test_tool_name_that_is_not_an_identifier_is_invalid_input(name):
    with pytest.raises(InvalidInput):
        validate_tool_name(name)


# --- built-in tools (contract 6.3) ------------------------------------------------------------------

# tool -> (parameter names in order, required names)
_BUILTIN_PARAMS = {
    "send_message": (["message"], ["message"]),
    "conversation_search": (["query", "roles", "limit", "start_date", "end_date"], []),
    "archival_memory_insert": (["content", "tags"], ["content"]),
    "archival_memory_search": (
        ["query", "tags", "tag_match_mode", "top_k", "start_datetime", "end_datetime"],
        ["query"],
    ),
    "core_memory_append": (["label", "content"], ["label", "content"]),
    "core_memory_replace": (["label", "old_content", "new_content"], ["label", "old_content", "new_content"]),
    "memory_replace": (["label", "old_string", "new_string"], ["label", "old_string", "new_string"]),
    "memory_insert": (["label", "new_string", "insert_line"], ["label", "new_string"]),
    "memory_rethink": (["label", "new_memory"], ["label", "new_memory"]),
    "memory_finish_edits": ([], []),
    "memory_apply_patch": (["label", "patch"], ["label", "patch"]),
    "memory": (
        [
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
        ],
        ["command"],
    ),
}


def test_builtin_tools_are_exactly_the_contract_set():
    assert set(BUILTIN_TOOLS) == set(_BUILTIN_PARAMS)


@pytest.mark.parametrize("name", sorted(_BUILTIN_PARAMS))
def test_builtin_schema_has_contract_parameters_and_required(name):
    params, required = _BUILTIN_PARAMS[name]
    schema = BUILTIN_TOOLS[name].json_schema
    assert schema["name"] == name
    assert list(schema["parameters"]["properties"]) == params
    assert schema["parameters"]["required"] == required


@pytest.mark.parametrize("name", sorted(_BUILTIN_PARAMS))
def test_builtin_has_description_and_rederivable_source(name):
    tool = BUILTIN_TOOLS[name]
    assert tool.description and tool.description == tool.json_schema["description"]
    assert derive_json_schema(tool.source_code) == tool.json_schema
    assert tool.return_char_limit == 50_000


def test_conversation_search_roles_is_array_of_role_enum():
    roles = BUILTIN_TOOLS["conversation_search"].json_schema["parameters"]["properties"]["roles"]
    assert roles["type"] == "array"
    assert roles["items"] == {"type": "string", "enum": ["assistant", "user", "tool"]}


def test_archival_search_tag_match_mode_is_any_or_all():
    props = BUILTIN_TOOLS["archival_memory_search"].json_schema["parameters"]["properties"]
    assert props["tag_match_mode"]["enum"] == ["any", "all"]


@pytest.mark.parametrize(
    ("name", "tool_type"),
    [
        ("send_message", "letta_core"),
        ("conversation_search", "letta_core"),
        ("archival_memory_insert", "letta_core"),
        ("archival_memory_search", "letta_core"),
        ("core_memory_append", "letta_memory_core"),
        ("core_memory_replace", "letta_memory_core"),
        ("memory_apply_patch", "letta_memory_core"),
        ("memory", "letta_memory_core"),
        ("memory_replace", "letta_sleeptime_core"),
        ("memory_insert", "letta_sleeptime_core"),
        ("memory_rethink", "letta_sleeptime_core"),
        ("memory_finish_edits", "letta_sleeptime_core"),
    ],
)
def test_builtin_tool_type_follows_contract(name, tool_type):
    assert BUILTIN_TOOLS[name].tool_type == tool_type


def test_every_agent_type_has_a_base_tool_set_of_builtins():
    assert set(BASE_TOOLS) == set(AGENT_TYPES) and len(AGENT_TYPES) == 9
    assert all(name in BUILTIN_TOOLS for names in BASE_TOOLS.values() for name in names)


def test_letta_v1_base_tools():
    assert set(BASE_TOOLS["letta_v1_agent"]) == {"conversation_search", "memory_insert", "memory_replace"}


def test_types_without_a_listed_set_get_letta_v1_tools():
    for agent_type in ("split_thread_agent", "voice_convo_agent", "voice_sleeptime_agent"):
        assert BASE_TOOLS[agent_type] == BASE_TOOLS["letta_v1_agent"]


def test_archival_tools_are_in_no_default_set():
    defaults = {name for names in BASE_TOOLS.values() for name in names}
    assert not defaults & {"archival_memory_insert", "archival_memory_search"}


def test_memgpt_rules_exit_on_send_message_and_continue_on_the_rest():
    rules = base_tool_rules("memgpt_agent")
    assert rules[0] == {"tool_name": "send_message", "type": "exit_loop", "prompt_template": None}
    assert [rule["tool_name"] for rule in rules] == list(BASE_TOOLS["memgpt_agent"])
    assert all(rule["type"] == "continue_loop" for rule in rules[1:])


def test_memgpt_v2_rules_follow_the_same_pattern():
    rules = base_tool_rules("memgpt_v2_agent")
    assert {rule["tool_name"]: rule["type"] for rule in rules} == {
        "send_message": "exit_loop",
        "conversation_search": "continue_loop",
        "memory_insert": "continue_loop",
        "memory_replace": "continue_loop",
    }


@pytest.mark.parametrize(
    "agent_type", ["letta_v1_agent", "react_agent", "sleeptime_agent", "voice_convo_agent"]
)
def test_other_agent_types_have_no_base_rules(agent_type):
    assert base_tool_rules(agent_type) == []


def test_base_rules_are_a_fresh_list_each_call():
    base_tool_rules("memgpt_agent")[0]["type"] = "changed"
    assert base_tool_rules("memgpt_agent")[0]["type"] == "exit_loop"


def test_unknown_agent_type_rules_is_invalid_input():
    with pytest.raises(InvalidInput):
        base_tool_rules("no_such_agent")
