"""Every environment variable the deploy artefacts give recalld is a setting it reads (src/recalld/settings.py),
with a value it accepts; a misspelt or renamed variable would otherwise be ignored without a word."""

from __future__ import annotations

import os
from functools import cache

import pytest
from pydantic import AliasChoices, TypeAdapter

from recalld.settings import Settings
from tests.deploy.artefacts import (
    COMPOSE,
    COMPOSE_DIR,
    compose,
    compose_variables,
    container,
    k8s,
    read_env_file,
    runtime_stage,
    service_environment,
)

# Read by the Python runtime or the OpenTelemetry SDK, not by Settings.
STANDARD = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_SDK_DISABLED"}
# Variables of deploy/compose.yaml itself (interpolation only; no container sees them under these names).
COMPOSE_ONLY = {"RECALLD_IMAGE", "RECALLD_HTTP_BIND", "RECALLD_HTTP_PORT", "POSTGRES_PASSWORD", "POSTGRES_HOST"}


@cache
def setting_names() -> dict[str, str]:
    """Environment variable (upper case) → Settings field."""
    names = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias or f"RECALLD_{name}"]
        for choice in choices:
            if isinstance(choice, str):
                names[choice.upper()] = name
    return names


@cache
def artefact_environments() -> dict[str, dict[str, str]]:
    """Where each set of variables comes from → the variables recalld's process gets there."""
    envs = {"Dockerfile ENV": runtime_stage().env}
    for variables_name, variables in (("defaults", {}),
                                      ("pgbouncer.env", read_env_file(COMPOSE_DIR / "pgbouncer.env")),
                                      ("observability.env", read_env_file(COMPOSE_DIR / "observability.env"))):
        services = compose(variables)["services"]
        for service in ("recalld", "migrate"):
            envs[f"compose {service} ({variables_name})"] = service_environment(services[service])
    envs["k8s ConfigMap recalld-config"] = k8s("ConfigMap", "recalld-config")["data"]
    envs["k8s Secret recalld-secrets (example)"] = k8s("Secret", "recalld-secrets")["stringData"]
    for kind, name in (("Deployment", "recalld"), ("Job", "recalld-migrate")):
        envs[f"k8s {kind} {name} env"] = {e["name"]: e["value"] for e in container(k8s(kind, name)).get("env", [])}
    return envs


@pytest.mark.parametrize("source", list(artefact_environments()))
def test_every_variable_is_a_setting_recalld_reads(source):
    known = setting_names()
    unknown = [name for name in artefact_environments()[source] if name.upper() not in known | dict.fromkeys(STANDARD)]
    assert not unknown, f"{source} sets variables recalld does not read: {unknown}"


@pytest.mark.parametrize("source", list(artefact_environments()))
def test_every_value_is_accepted_and_lands_in_its_setting(source, monkeypatch):
    env = artefact_environments()[source]
    for name in list(os.environ):
        if name.upper() in setting_names():
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name != "PATH":
            monkeypatch.setenv(name, value)
    settings = Settings()  # raises on a value the setting refuses
    fields = Settings.model_fields
    for name, value in env.items():
        field = setting_names().get(name.upper())
        if field is None:
            continue
        expected = TypeAdapter(fields[field].annotation).validate_python(value)
        assert getattr(settings, field) == expected, f"{name}={value!r} did not reach {field}"


def test_compose_env_files_only_set_variables_the_compose_file_uses():
    used = compose_variables(COMPOSE.read_text())
    for path in COMPOSE_DIR.glob("*.env"):
        unused = set(read_env_file(path)) - used
        assert not unused, f"{path.name} sets {unused}, which deploy/compose.yaml never reads"


def test_compose_variables_are_settings_or_the_files_own():
    known = setting_names()
    for name in compose_variables(COMPOSE.read_text()):
        assert name.upper() in known or name in COMPOSE_ONLY, f"compose.yaml interpolates unknown ${{{name}}}"
