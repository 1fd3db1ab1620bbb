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


def clean_json(value: Any) -> Any:
    """Apply clean_text to every key and string inside a JSON value."""
    if isinstance(value, str):
        return clean_text(value)
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
Int = StrictInt
Bool = StrictBool
Number = StrictInt | StrictFloat


class RequestModel(BaseModel):
    """Request bodies ignore unknown fields, as Letta does (contract 1.4)."""

    model_config = ConfigDict(extra="ignore")


class ResponseModel(BaseModel):
    """Response objects: every field is emitted, nulls included (contract 1.1)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
