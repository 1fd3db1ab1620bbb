"""Signatures and docstrings of the built-in tools (contract 6.3).

These functions are never called: `builtin.py` reads their source to derive the JSON schemas the
LLM sees, the same way it does for a user's tool. The agent loop implements their behaviour.
Parameter names and required-ness follow the contract table; the wording is our own.
"""

from __future__ import annotations

from typing import Literal


def send_message(message: str):
    """Send a message to the user. This is the only way the user sees anything you say.

    Put the complete reply in `message`; text outside this tool is not shown to the user.
    Returns a confirmation that the message was sent.

    Args:
        message: The full text to show the user. Markdown is allowed.
    """


def conversation_search(
    query: str | None = None,
    roles: list[Literal["assistant", "user", "tool"]] | None = None,
    limit: int = 5,
    start_date: str | None = None,
    end_date: str | None = None,
):
    """Search earlier messages of this conversation, including ones no longer in your context.

    Matches text case-insensitively and lists the newest matches first, each with its role, timestamp
    and content. Use it to recall something the user said before. Returns the matching messages, or
    a note that nothing matched.

    Args:
        query: Text to look for in past messages. Leave empty to list messages by date or role only.
        roles: Only return messages from these roles, e.g. ["user"] for what the user wrote.
        limit: Largest number of messages to return.
        start_date: Only messages on or after this date, as an ISO 8601 date or datetime
            (e.g. "2024-05-01" or "2024-05-01T09:00"), in the agent's timezone.
        end_date: Only messages on or before this date, as an ISO 8601 date or datetime,
            in the agent's timezone. A bare date includes that whole day.
    """


def archival_memory_insert(content: str, tags: list[str] | None = None):
    """Save a piece of text to archival memory, your long-term store outside the context window.

    Store facts worth keeping beyond this conversation in a self-contained form, so they make
    sense when found later by archival_memory_search. Returns nothing on success.

    Args:
        content: The text to store. Write it so it can be understood on its own.
        tags: Optional labels to file the text under, for filtering searches later.
    """


def archival_memory_search(
    query: str,
    tags: list[str] | None = None,
    tag_match_mode: Literal["any", "all"] = "any",
    top_k: int | None = None,
    start_datetime: str | None = None,
    end_datetime: str | None = None,
):
    """Search archival memory by meaning and return the stored passages closest to the query.

    Results come nearest first, each with its text, tags and creation time.

    Args:
        query: What to look for, phrased as a question or a description of the information.
        tags: Only search passages carrying these tags.
        tag_match_mode: "any" to match passages with at least one of the tags, "all" to require
            every tag.
        top_k: Largest number of passages to return.
        start_datetime: Only passages created at or after this ISO 8601 date or datetime.
        end_datetime: Only passages created at or before this ISO 8601 date or datetime.
    """


def core_memory_append(label: str, content: str):
    """Append text to the end of a core memory block, on a new line.

    Core memory blocks are always visible to you in the system prompt. Returns the block's new value.

    Args:
        label: Label of the block to edit, such as "human" or "persona".
        content: Text to add at the end of the block.
    """


def core_memory_replace(label: str, old_content: str, new_content: str):
    """Replace text in a core memory block.

    Every occurrence of `old_content` is replaced with `new_content`; it is an error if
    `old_content` does not occur. To delete text, pass an empty `new_content`.
    Returns the block's new value.

    Args:
        label: Label of the block to edit, such as "human" or "persona".
        old_content: The exact text to replace, as it appears in the block.
        new_content: The text to put in its place.
    """


def memory_replace(label: str, old_string: str, new_string: str):
    """Replace one exact passage of a memory block with new text.

    `old_string` must appear in the block exactly once; include enough surrounding text to make
    it unique. Copy it without the line-number prefixes shown in the prompt.
    To delete text, pass an empty `new_string`. Returns the block's new value.

    Args:
        label: Label of the memory block to edit.
        old_string: The exact text to replace, occurring once in the block.
        new_string: The text to put in its place.
    """


def memory_insert(label: str, new_string: str, insert_line: int = -1):
    """Insert text into a memory block at a given line.

    Returns the block's new value.

    Args:
        label: Label of the memory block to edit.
        new_string: The text to insert; it may span several lines.
        insert_line: Line number after which to insert: 0 inserts at the top, -1 (the default)
            appends at the end.
    """


def memory_rethink(label: str, new_memory: str):
    """Rewrite a memory block completely, replacing its whole value.

    Use it to reorganise or condense a block after many small edits. The block is created if
    no block has this label. Returns the block's new value.

    Args:
        label: Label of the memory block to rewrite.
        new_memory: The complete new content of the block.
    """


def memory_finish_edits():
    """Signal that you have finished editing memory for now. Returns nothing."""


def memory_apply_patch(label: str, patch: str):
    """Edit memory blocks by applying a patch in unified-diff style.

    For one block, give hunks of lines starting with " " (context), "-" (remove) or "+" (add).
    To change several blocks at once, start each part with a header line
    "*** Add Block: <label>", "*** Delete Block: <label>" or "*** Update Block: <label>".
    Returns the result of applying the patch.

    Args:
        label: Label of the memory block to patch, when the patch has no block headers.
        patch: The patch text to apply.
    """


def memory(
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
):
    """Manage memory blocks as if they were files, addressed by path (the block label).

    Commands and the arguments they use:
    create (path, file_text, description) makes a new block;
    str_replace (path, old_string, new_string) replaces text that occurs exactly once;
    insert (path, insert_line, insert_text) inserts text after a line (0 for the top);
    delete (path) removes a block;
    rename (old_path, new_path) gives a block a new label.
    Returns a short report of what changed.

    Args:
        command: One of "create", "str_replace", "insert", "delete" or "rename".
        path: Label of the block to act on.
        file_text: Initial content of a block made by create.
        description: What the block is for, for create.
        old_string: Text to replace, for str_replace.
        new_string: Replacement text, for str_replace.
        insert_line: Line number after which to insert, for insert.
        insert_text: Text to insert, for insert.
        old_path: Current label of the block, for rename.
        new_path: New label of the block, for rename.
    """
