"""The artefacts are secure by default (R21): auth required in the image, Compose and Kubernetes; Compose
publishes on 127.0.0.1 unless told otherwise; every multi-instance artefact gives its replicas one secrets key."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.artefacts import (
    COMPOSE,
    COMPOSE_REQUIRED,
    compose,
    container,
    interpolate,
    k8s,
    runtime_stage,
    service_environment,
)
from tests.deploy.conftest import image_argv, image_server_env
from tests.servers import free_port


def test_the_image_requires_a_key_by_default():
    assert runtime_stage().env["RECALLD_AUTH"] == "required"


def test_compose_requires_a_key_by_default_and_can_be_opened_on_purpose():
    for service in ("recalld", "migrate"):
        assert service_environment(compose()["services"][service])["RECALLD_AUTH"] == "required"
    opened = compose({"RECALLD_AUTH": "off"})["services"]["recalld"]
    assert service_environment(opened)["RECALLD_AUTH"] == "off"


def test_compose_publishes_on_loopback_unless_told_otherwise():
    assert compose()["services"]["nginx"]["ports"] == ["127.0.0.1:8283:8283"]
    exposed = compose({"RECALLD_HTTP_BIND": "0.0.0.0", "RECALLD_HTTP_PORT": "9000"})["services"]["nginx"]["ports"]
    assert exposed == ["0.0.0.0:9000:8283"]
    # No other service is published on every interface either.
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_refuses_to_start_without_a_secrets_key_and_gives_every_replica_the_same():
    with pytest.raises(KeyError, match="RECALLD_SECRETS_KEY"):
        interpolate(COMPOSE.read_text(), {})
    for service in ("recalld", "migrate"):
        env = service_environment(compose()["services"][service])
        assert env["RECALLD_SECRETS_KEY"] == COMPOSE_REQUIRED["RECALLD_SECRETS_KEY"]


def test_kubernetes_requires_a_key_and_every_pod_reads_the_secrets_key_from_one_secret():
    assert k8s("ConfigMap", "recalld-config")["data"]["RECALLD_AUTH"] == "required"
    assert "RECALLD_SECRETS_KEY" in k8s("Secret", "recalld-secrets")["stringData"]
    assert {"secretRef": {"name": "recalld-secrets"}} in container(k8s("Deployment", "recalld"))["envFrom"]
    # Not in the ConfigMap, and not overridden per pod (every replica must have the same one).
    assert "RECALLD_SECRETS_KEY" not in k8s("ConfigMap", "recalld-config")["data"]
    pod_env = {e["name"] for e in container(k8s("Deployment", "recalld")).get("env", [])}
    assert "RECALLD_SECRETS_KEY" not in pod_env


def _run_image(tmp_path, **extra: str) -> subprocess.CompletedProcess:
    env = image_server_env(tmp_path, "http://127.0.0.1:9/v1", free_port(), **extra)
    return subprocess.run(image_argv(), env=env, capture_output=True, text=True, timeout=60)


def test_the_image_with_auth_turned_off_refuses_to_listen_on_every_interface(tmp_path):
    result = _run_image(tmp_path, RECALLD_LISTEN_HOST="0.0.0.0", RECALLD_AUTH="off")
    assert result.returncode == 2
    assert "refusing to serve without authentication on 0.0.0.0" in result.stderr
    assert "RECALLD_ALLOW_UNAUTHENTICATED" in result.stderr
