"""Letta's sandbox configurations and their environment variables (R23)."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from .types import Bool, JSONObject, RequestModel, ResponseModel, Text


class SandboxConfigCreate(RequestModel):
    """`config` is a LocalSandboxConfig; E2B and Modal configurations are refused (400 naming them)."""

    model_config = ConfigDict(extra="forbid")

    config: JSONObject


class LocalSandboxConfig(RequestModel):
    """Letta's LocalSandboxConfig; what recalld's sandbox cannot honour (a host directory, a virtualenv, pip
    packages) is refused with a 400 naming the field."""

    model_config = ConfigDict(extra="forbid")

    sandbox_dir: Text | None = None
    use_venv: Bool = False
    venv_name: Text = Field(default="venv", min_length=1, max_length=255)
    pip_requirements: list[JSONObject] = Field(default_factory=list)


class SandboxConfigUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    config: JSONObject | None = None


class SandboxConfig(ResponseModel):
    id: str
    type: str
    organization_id: str | None = None
    config: dict = Field(default_factory=dict)
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SandboxEnvironmentVariableCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    key: Text = Field(min_length=1, max_length=255)
    value: Text = Field(max_length=32_768)
    description: Text | None = Field(default=None, max_length=4096)


class SandboxEnvironmentVariableUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    key: Text | None = Field(default=None, min_length=1, max_length=255)
    value: Text | None = Field(default=None, max_length=32_768)
    description: Text | None = Field(default=None, max_length=4096)


class SandboxEnvironmentVariable(ResponseModel):
    id: str
    key: str
    value: str
    description: str | None = None
    organization_id: str | None = None
    sandbox_config_id: str
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
