"""The built-in core-memory tools, as pure edits of a turn's in-memory blocks (contract 6.3).

Each edit checks the block's limit before changing anything (contract R12): an edit that would make a
block longer than its limit fails with an error the model sees, and the block keeps its old value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from recalld import ids

READ_ONLY_ERROR = "Error This block is read-only and cannot be edited."
_LINE_NUMBER_PREFIX = re.compile(r"^\s*\d+→", re.MULTILINE)


class ToolError(Exception):
    """A tool failed in a way the model should read about; the turn goes on."""


@dataclass
class Memory:
    """The agent's blocks during a turn, by label; records which ones changed or were created."""

    blocks: dict[str, dict]
    default_limit: int
    changed: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    # Blocks the model removed from its memory: they are detached from the agent, not destroyed.
    detached: dict[str, dict] = field(default_factory=dict)

    def get(self, label: str) -> dict:
        block = self.blocks.get(label)
        if block is None:
            raise ToolError(f"Error: no memory block with label '{label}'; existing labels: {sorted(self.blocks)}")
        return block

    def writable(self, label: str) -> dict:
        block = self.get(label)
        if block.get("read_only"):
            raise ToolError(READ_ONLY_ERROR)
        return block

    def set_value(self, label: str, value: str) -> str:
        block = self.writable(label)
        if len(value) > block["limit"]:
            raise ToolError(
                f"Edit failed: Exceeds {block['limit']} character limit (requested {len(value)}) for block "
                f"'{label}'. The block is unchanged; shorten the content or remove something first."
            )
        block["value"] = value
        self.changed.add(label)
        return value

    def detach(self, label: str) -> str:
        block = self.writable(label)
        del self.blocks[label]
        self.changed.discard(label)
        if label in self.created:
            self.created.discard(label)
        else:
            self.detached[block["id"]] = block
        return f"removed memory block '{label}'"

    def create(self, label: str, value: str, description: str | None = None) -> str:
        if label in self.blocks:
            raise ToolError(f"Error: a memory block with label '{label}' already exists")
        if len(value) > self.default_limit:
            raise ToolError(f"Edit failed: Exceeds {self.default_limit} character limit (requested {len(value)})")
        self.blocks[label] = {
            "id": ids.new_id("block"),
            "label": label,
            "value": value,
            "limit": self.default_limit,
            "description": description,
            "read_only": False,
        }
        self.created.add(label)
        return value


def _no_line_numbers(text: str, what: str) -> None:
    if _LINE_NUMBER_PREFIX.search(text):
        raise ToolError(f"Error: {what} contains line-number prefixes (like '12→'); pass the text without them.")


def core_memory_append(memory: Memory, label: str, content: str) -> str:
    value = memory.get(label)["value"]
    return memory.set_value(label, f"{value}\n{content}" if value else content)


def core_memory_replace(memory: Memory, label: str, old_content: str, new_content: str) -> str:
    value = memory.get(label)["value"]
    if not old_content or old_content not in value:
        raise ToolError(f"Error: old_content '{old_content}' not found in memory block '{label}'")
    return memory.set_value(label, value.replace(old_content, new_content))


def memory_replace(memory: Memory, label: str, old_string: str, new_string: str) -> str:
    _no_line_numbers(old_string, "old_string")
    _no_line_numbers(new_string, "new_string")
    value = memory.get(label)["value"].expandtabs()
    old_string, new_string = old_string.expandtabs(), new_string.expandtabs()
    count = value.count(old_string) if old_string else 0
    if count == 0:
        raise ToolError(f"Error: old_string '{old_string}' does not appear in memory block '{label}'")
    if count > 1:
        lines = [i + 1 for i, line in enumerate(value.split("\n")) if old_string.split("\n")[0] in line]
        raise ToolError(
            f"Error: old_string occurs {count} times in memory block '{label}' (lines {lines}); "
            "include more context so it is unique"
        )
    return memory.set_value(label, value.replace(old_string, new_string))


def memory_insert(memory: Memory, label: str, new_string: str, insert_line: int = -1) -> str:
    _no_line_numbers(new_string, "new_string")
    value = memory.get(label)["value"].expandtabs()
    lines = value.split("\n") if value else []
    if insert_line == -1:
        insert_line = len(lines)
    if not 0 <= insert_line <= len(lines):
        raise ToolError(f"Error: insert_line {insert_line} is outside the block (0 to {len(lines)}, or -1 for the end)")
    new_lines = lines[:insert_line] + new_string.expandtabs().split("\n") + lines[insert_line:]
    return memory.set_value(label, "\n".join(new_lines))


def memory_rethink(memory: Memory, label: str, new_memory: str) -> str:
    if label not in memory.blocks:
        return memory.create(label, new_memory)
    return memory.set_value(label, new_memory)


def memory_finish_edits(memory: Memory) -> None:
    return None


def _apply_hunks(value: str, patch_lines: list[str], label: str) -> str:
    """Apply unified-diff style hunks: each hunk's old side must occur once; it becomes the new side."""
    hunks: list[list[str]] = []
    for line in patch_lines:
        if line.startswith("@@"):
            hunks.append([])
        elif line[:1] in (" ", "-", "+") or line == "":
            if not hunks:
                hunks.append([])
            hunks[-1].append(line)
    for hunk in hunks:
        old = "\n".join(ln[1:] for ln in hunk if ln[:1] in (" ", "-") or ln == "")
        new = "\n".join(ln[1:] for ln in hunk if ln[:1] in (" ", "+") or ln == "")
        if old == "" and value == "":
            value = new
            continue
        if value.count(old) != 1:
            raise ToolError(f"Error: a hunk of the patch does not match memory block '{label}' exactly once")
        value = value.replace(old, new)
    return value


def memory_apply_patch(memory: Memory, label: str, patch: str) -> str:
    lines = patch.split("\n")
    if not any(line.startswith("*** ") for line in lines):
        return memory.set_value(label, _apply_hunks(memory.get(label)["value"], lines, label))
    # Multi-block mode: sections headed by *** Add Block / *** Delete Block / *** Update Block.
    results = []
    section: tuple[str, str] | None = None
    body: list[str] = []

    def flush() -> None:
        if section is None:
            return
        action, target = section
        if action == "Add":
            memory.create(target, "\n".join(ln[1:] if ln.startswith("+") else ln for ln in body).strip("\n"))
        elif action == "Delete":
            memory.detach(target)
        else:
            memory.set_value(target, _apply_hunks(memory.get(target)["value"], body, target))
        results.append(f"{action.lower()}d {target}")

    for line in lines:
        match = re.match(r"^\*\*\* (Add|Delete|Update) Block:\s*(.+?)\s*$", line)
        if match:
            flush()
            section, body = (match.group(1), match.group(2)), []
        elif line.startswith("*** "):
            continue
        else:
            body.append(line)
    flush()
    return "; ".join(results) or "no changes"


def memory(
    memory: Memory,
    command: str,
    path: str | None = None,
    file_text: str | None = None,
    description: str | None = None,
    old_string: str | None = None,
    new_string: str | None = None,
    insert_line: int | None = None,
    insert_text: str | None = None,
    old_path: str | None = None,
    new_path: str | None = None,
) -> str:
    """The omni memory tool: create, str_replace, insert, delete, rename."""

    def label_of(p: str | None) -> str:
        if not p:
            raise ToolError(f"Error: command '{command}' needs a path")
        return p.strip().removeprefix("/memories/").strip("/")

    if command == "create":
        return memory.create(label_of(path), file_text or "", description)
    if command == "str_replace":
        return memory_replace(memory, label_of(path), old_string or "", new_string or "")
    if command == "insert":
        return memory_insert(memory, label_of(path), insert_text or "", -1 if insert_line is None else insert_line)
    if command == "delete":
        return memory.detach(label_of(path))
    if command == "rename":
        source, target = label_of(old_path), label_of(new_path)
        block = memory.writable(source)
        if target in memory.blocks:
            raise ToolError(f"Error: a memory block with label '{target}' already exists")
        memory.blocks[target] = memory.blocks.pop(source)
        block["label"] = target
        if source in memory.created:
            memory.created.discard(source)
            memory.created.add(target)
        else:
            memory.changed.discard(source)
            memory.changed.add(target)
        return f"renamed {source} to {target}"
    raise ToolError(f"Error: unknown command '{command}'; use create, str_replace, insert, delete or rename")


MEMORY_TOOLS = {
    "core_memory_append": core_memory_append,
    "core_memory_replace": core_memory_replace,
    "memory_replace": memory_replace,
    "memory_insert": memory_insert,
    "memory_rethink": memory_rethink,
    "memory_finish_edits": memory_finish_edits,
    "memory_apply_patch": memory_apply_patch,
    "memory": memory,
}
