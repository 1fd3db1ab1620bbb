"""Field types for request bodies: strict JSON types (no coercion, contract R5) and text that the
databases can store (no NUL bytes, no lone surrogates; contract R16)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)


def clean_text(value: str) -> str:
    """Reject text PostgreSQL cannot store as UTF-8; a NUL byte is refused with the others."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("text must be valid unicode (lone surrogates are not allowed)") from e
    return value


def strip_nul(value: str) -> str:
    """Block values drop NUL bytes silently, as Letta does."""
    value = value.replace("\x00", "")
    return clean_text(value)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1


def clean_json(value: Any) -> Any:
    """Apply clean_text to every key and string inside a JSON value; integers must fit in 64 bits."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integers must fit in 64 bits")
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


Text = Annotated[StrictStr, AfterValidator(clean_text)]
BlockText = Annotated[StrictStr, AfterValidator(strip_nul)]
Name = Annotated[StrictStr, AfterValidator(clean_text), Field(min_length=1, max_length=512)]
JSONObject = Annotated[dict[str, Any], AfterValidator(clean_json)]
JSONValue = Annotated[Any, AfterValidator(clean_json)]
def _fits(low: int, high: int):
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


# Every integer a request carries fits the databases' 64-bit columns (contract R16); validators, not Field
# bounds, so a field's own ge/le still apply on top.
Int = Annotated[StrictInt, _fits(INT64_MIN, INT64_MAX)]
# ... and those stored in 32-bit columns fit those.
Int32 = Annotated[StrictInt, _fits(-INT32_MAX - 1, INT32_MAX)]
Bool = StrictBool
Number = StrictInt | StrictFloat


class RequestModel(BaseModel):
    """Request bodies ignore unknown fields, as Letta does (contract 1.4)."""

    model_config = ConfigDict(extra="ignore")


class ResponseModel(BaseModel):
    """Response objects: every field is emitted, nulls included (contract 1.1)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
