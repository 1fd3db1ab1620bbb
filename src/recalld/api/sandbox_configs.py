"""/v1/sandbox-config: Letta's sandbox configurations and their environment variables (R23)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from recalld.api.deps import CallerDep
from recalld.api.params import Cursor, Limit, QText
from recalld.api.schemas.common import error_responses
from recalld.api.schemas.sandbox_configs import (
    LocalSandboxConfig,
    SandboxConfig,
    SandboxConfigCreate,
    SandboxConfigUpdate,
    SandboxEnvironmentVariable,
    SandboxEnvironmentVariableCreate,
    SandboxEnvironmentVariableUpdate,
)
from recalld.errors import InvalidInput
from recalld.ids import id_pattern
from recalld.services.sandbox_configs import SandboxConfigService

router = APIRouter(tags=["sandbox-config"])


async def get_sandbox_configs(request: Request) -> SandboxConfigService:
    return request.app.state.sandbox_configs


SandboxConfigsDep = Annotated[SandboxConfigService, Depends(get_sandbox_configs)]

SandboxConfigId = Annotated[
    str, Path(pattern=id_pattern("sandbox"), description="The sandbox configuration's id (sandbox-<uuid4>)")
]
EnvVarId = Annotated[
    str, Path(pattern=id_pattern("sandbox-env"), description="The variable's id (sandbox-env-<uuid4>)")
]


@router.post("/v1/sandbox-config/", response_model=SandboxConfig, responses=error_responses(400, 409))
async def create_sandbox_config(body: SandboxConfigCreate, caller: CallerDep, configs: SandboxConfigsDep) -> dict:
    """Create the organization's local sandbox configuration, or update it when it has one (as Letta does)."""
    return await configs.create_or_update(caller, body.config)


@router.post("/v1/sandbox-config/local/default", response_model=SandboxConfig, responses=error_responses(409))
async def create_default_local_sandbox_config(caller: CallerDep, configs: SandboxConfigsDep) -> dict:
    """The organization's local configuration, made with the defaults when it has none."""
    return await configs.default_local(caller)


@router.post("/v1/sandbox-config/e2b/default", response_model=SandboxConfig, responses=error_responses(400))
async def create_default_e2b_sandbox_config(caller: CallerDep) -> dict:
    raise InvalidInput("sandbox type 'e2b' is not supported by recalld; only 'local' sandboxes (bubblewrap)")


@router.post("/v1/sandbox-config/local", response_model=SandboxConfig, responses=error_responses(400, 409))
async def create_custom_local_sandbox_config(
    body: LocalSandboxConfig, caller: CallerDep, configs: SandboxConfigsDep
) -> dict:
    """Create or update the local configuration from a LocalSandboxConfig body."""
    return await configs.create_or_update(caller, body.model_dump(exclude_unset=True))


@router.post("/v1/sandbox-config/local/recreate-venv", response_model=SandboxConfig, responses=error_responses(400))
async def recreate_local_sandbox_venv(caller: CallerDep) -> dict:
    raise InvalidInput("recalld does not build virtualenvs for tools (use_venv is not supported; see the README)")


@router.get("/v1/sandbox-config/", response_model=list[SandboxConfig], responses=error_responses(400))
async def list_sandbox_configs(
    caller: CallerDep,
    configs: SandboxConfigsDep,
    limit: Limit = 1000,
    after: Cursor = None,
    sandbox_type: QText = None,
) -> list[dict]:
    return await configs.list(caller, sandbox_type=sandbox_type, after=after, limit=limit)


@router.patch(
    "/v1/sandbox-config/{sandbox_config_id}", response_model=SandboxConfig, responses=error_responses(400, 404)
)
async def update_sandbox_config(
    sandbox_config_id: SandboxConfigId, body: SandboxConfigUpdate, caller: CallerDep, configs: SandboxConfigsDep
) -> dict:
    return await configs.update(caller, sandbox_config_id, body.config)


@router.delete("/v1/sandbox-config/{sandbox_config_id}", response_model=None, responses=error_responses(404))
async def delete_sandbox_config(
    sandbox_config_id: SandboxConfigId, caller: CallerDep, configs: SandboxConfigsDep
) -> None:
    """Delete the configuration and its environment variables."""
    await configs.delete(caller, sandbox_config_id)


@router.post(
    "/v1/sandbox-config/{sandbox_config_id}/environment-variable",
    response_model=SandboxEnvironmentVariable,
    responses=error_responses(400, 404, 409),
)
async def create_sandbox_env_var(
    sandbox_config_id: SandboxConfigId,
    body: SandboxEnvironmentVariableCreate,
    caller: CallerDep,
    configs: SandboxConfigsDep,
) -> dict:
    """A variable every custom tool of the organization sees (an agent's own secrets override it)."""
    return await configs.create_var(caller, sandbox_config_id, body.model_dump())


@router.get(
    "/v1/sandbox-config/{sandbox_config_id}/environment-variable",
    response_model=list[SandboxEnvironmentVariable],
    responses=error_responses(404),
)
async def list_sandbox_env_vars(
    sandbox_config_id: SandboxConfigId,
    caller: CallerDep,
    configs: SandboxConfigsDep,
    limit: Limit = 1000,
    after: Cursor = None,
) -> list[dict]:
    return await configs.list_vars(caller, sandbox_config_id, after=after, limit=limit)


@router.patch(
    "/v1/sandbox-config/environment-variable/{env_var_id}",
    response_model=SandboxEnvironmentVariable,
    responses=error_responses(400, 404, 409),
)
async def update_sandbox_env_var(
    env_var_id: EnvVarId, body: SandboxEnvironmentVariableUpdate, caller: CallerDep, configs: SandboxConfigsDep
) -> dict:
    return await configs.update_var(caller, env_var_id, body.model_dump(exclude_unset=True))


@router.delete(
    "/v1/sandbox-config/environment-variable/{env_var_id}", response_model=None, responses=error_responses(404)
)
async def delete_sandbox_env_var(env_var_id: EnvVarId, caller: CallerDep, configs: SandboxConfigsDep) -> None:
    await configs.delete_var(caller, env_var_id)
