"""Derive a tool's JSON schema from its Python source (contract R4).

The source is only parsed with `ast`, never executed or imported: it is user input, and the
schema must be known before the sandbox ever runs it.
"""

from __future__ import annotations

import ast
import keyword
import re

from ..errors import InvalidInput

MAX_TOOL_NAME_LEN = 48

# Parameters the runtime fills in itself; the LLM never sees them.
_INJECTED_PARAMS = frozenset({"self", "agent_state"})

_SCALAR_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "dict": "object",
    "Dict": "object",
}
_LIST_NAMES = frozenset({"list", "List"})

_ARGS_HEADERS = frozenset({"Args", "Arguments", "Parameters", "Params"})
# Google-style section headers; the description is the text before the first one.
_SECTION_HEADER = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?|"
    r"Attributes|Warnings?|Todo|See Also)\s*:\s*$"
)
# "name: desc", "name (type): desc", "*args: desc"
_ARG_ENTRY = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(?:\((?P<type>[^)]*)\))?\s*:(?P<desc>.*)$")


class _SchemaError(Exception):
    """Internal: the reason a schema can't be derived, wrapped into InvalidInput at the boundary."""


def derive_json_schema(source_code: str) -> dict:
    """Return `{"name", "description", "parameters"}` for the last top-level function in the source."""
    try:
        return _derive(source_code)
    except _SchemaError as exc:
        raise InvalidInput(f"Failed to derive json schema: {exc}") from None
    except RecursionError:  # an annotation nested deeper than the walk can follow
        raise InvalidInput("Failed to derive json schema: a type annotation is nested too deeply") from None


def function_name(source_code: str) -> str:
    """Return the name of the tool function in the source: the last top-level function it defines."""
    try:
        return _last_function(source_code).name
    except _SchemaError as exc:
        raise InvalidInput(f"Failed to derive json schema: {exc}") from None


def validate_tool_name(name: str) -> None:
    """Raise InvalidInput unless `name` is usable as a tool name (an ASCII identifier of at most 48 chars)."""
    if len(name) > MAX_TOOL_NAME_LEN:
        raise InvalidInput(f"Tool name '{name}' is longer than {MAX_TOOL_NAME_LEN} characters")
    # LLM providers accept only ASCII function names, so a unicode identifier would fail at call time.
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        raise InvalidInput(f"Tool name '{name}' is not a valid Python identifier")


def _derive(source_code: str) -> dict:
    func = _last_function(source_code)
    docstring = ast.get_docstring(func) or ""
    arg_docs = _parse_args_section(docstring)

    properties: dict[str, dict] = {}
    required: list[str] = []
    for arg, has_default in _signature(func):
        if arg.arg in _INJECTED_PARAMS:
            continue
        if arg.annotation is None:
            raise _SchemaError(f"parameter '{arg.arg}' has no type annotation")
        description = arg_docs.get(arg.arg)
        if not description:
            raise _SchemaError(f"parameter '{arg.arg}' has no description in the docstring's Args section")
        optional, prop = _type_schema(arg.annotation, arg.arg)
        properties[arg.arg] = {**prop, "description": description}
        if not has_default and not optional:
            required.append(arg.arg)

    return {
        "name": func.name,
        "description": _leading_text(docstring),
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


def _last_function(source_code: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    try:
        tree = ast.parse(source_code)
    # ValueError covers NUL bytes and lone surrogates; RecursionError/MemoryError pathological nesting.
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _SchemaError(f"source code does not parse: {exc}") from None
    funcs = [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not funcs:
        raise _SchemaError("source code defines no function")
    return funcs[-1]


def _signature(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[ast.arg, bool]]:
    """(parameter, has_default) in signature order; *args and **kwargs have no JSON form and are left out."""
    args = func.args
    positional = args.posonlyargs + args.args
    # Positional defaults belong to the last len(defaults) positional parameters.
    first_default = len(positional) - len(args.defaults)
    params = [(arg, i >= first_default) for i, arg in enumerate(positional)]
    params += [
        (arg, default is not None) for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    return params


def _type_schema(node: ast.expr, param: str) -> tuple[bool, dict]:
    """(is_optional, {"type", ...}) for an annotation."""
    # Quoted annotations ("list[str]") are ordinary annotations in a string.
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except (SyntaxError, ValueError):
            raise _SchemaError(f"parameter '{param}' has an unsupported type {node.value!r}") from None

    members = _union_members(node)
    if members is not None:
        non_none = [m for m in members if not _is_none(m)]
        if len(non_none) != 1:
            raise _SchemaError(f"parameter '{param}' has an unsupported type {_unparse(node)}")
        _, schema = _type_schema(non_none[0], param)
        return len(non_none) < len(members), schema
    return False, _plain_type_schema(node, param)


def _plain_type_schema(node: ast.expr, param: str) -> dict:
    name = _type_name(node)
    if isinstance(node, ast.Name | ast.Attribute):
        if name in _SCALAR_TYPES:
            return {"type": _SCALAR_TYPES[name]}
        if name in _LIST_NAMES:
            return {"type": "array"}
    elif isinstance(node, ast.Subscript):
        if name in ("dict", "Dict"):
            return {"type": "object"}
        if name in _LIST_NAMES:
            _, items = _type_schema(node.slice, param)
            return {"type": "array", "items": items}
        if name == "Literal":
            return _literal_schema(node, param)
    raise _SchemaError(f"parameter '{param}' has an unsupported type {_unparse(node)}")


def _literal_schema(node: ast.Subscript, param: str) -> dict:
    values_node = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    values = [v.value if isinstance(v, ast.Constant) else None for v in values_node]
    if values and all(isinstance(v, str) for v in values):
        return {"type": "string", "enum": values}
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return {"type": "integer", "enum": values}
    raise _SchemaError(f"parameter '{param}' has an unsupported type {_unparse(node)}")


def _union_members(node: ast.expr) -> list[ast.expr] | None:
    """The members of Optional[X], Union[...] or X | Y; None when the annotation is not a union."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        # Iterative: `a | b | c` nests to the left, and a long chain would exhaust the recursion limit.
        members, pending = [], [node]
        while pending:
            member = pending.pop()
            if isinstance(member, ast.BinOp) and isinstance(member.op, ast.BitOr):
                pending += [member.right, member.left]
            else:
                members.append(member)
        return members
    if isinstance(node, ast.Subscript):
        name = _type_name(node)
        if name == "Optional":
            return [node.slice, ast.Constant(value=None)]
        if name == "Union":
            return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    return None


def _type_name(node: ast.expr) -> str | None:
    """`list` for list, list[int], typing.List and t.List[int] alike."""
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_none(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or _type_name(node) == "NoneType"


def _unparse(node: ast.expr) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 80 else text[:77] + "..."


def _leading_text(docstring: str) -> str:
    lines = []
    for line in docstring.splitlines():
        if _SECTION_HEADER.match(line):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def _parse_args_section(docstring: str) -> dict[str, str]:
    """Map parameter name to its description from the Google-style Args section."""
    lines = docstring.splitlines()
    start = next((i for i, line in enumerate(lines) if _header_name(line) in _ARGS_HEADERS), None)
    if start is None:
        return {}
    header_indent = _indent(lines[start])
    entry_indent: int | None = None
    descriptions: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = _indent(line)
        # A line back at the header's indentation (or another header) ends the section.
        if indent <= header_indent or _SECTION_HEADER.match(line):
            break
        if entry_indent is None:
            entry_indent = indent
        match = _ARG_ENTRY.match(line.strip()) if indent <= entry_indent else None
        if match:
            current = descriptions.setdefault(match["name"], [])
            current.append(match["desc"].strip())
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(part for part in parts if part) for name, parts in descriptions.items()}


def _header_name(line: str) -> str | None:
    match = _SECTION_HEADER.match(line)
    return match.group(1) if match else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
