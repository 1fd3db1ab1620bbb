"""Letta-style prefixed ids (`agent-<uuid4>`) and the defaults of single-user mode."""

from __future__ import annotations

import re
import uuid

DEFAULT_ORG_ID = "org-00000000-0000-4000-8000-000000000000"
DEFAULT_USER_ID = "user-00000000-0000-4000-8000-000000000000"
DEFAULT_ORG_NAME = "default_org"
DEFAULT_USER_NAME = "default_user"

_UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def id_pattern(prefix: str) -> str:
    """The regex a path parameter of this kind must match (a mismatch is 422)."""
    return f"^{prefix}-{_UUID4}$"


def is_valid(prefix: str, value: str) -> bool:
    return re.fullmatch(id_pattern(prefix), value) is not None
