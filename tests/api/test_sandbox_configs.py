"""Letta's sandbox-config API (R23) on both backends, over raw HTTP: letta-client 1.12.1 has no resource for it."""

from __future__ import annotations

import uuid

import httpx
import pytest

UNKNOWN_CONFIG_ID = "sandbox-00000000-0000-4000-8000-000000000000"
UNKNOWN_VAR_ID = "sandbox-env-00000000-0000-4000-8000-000000000000"


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def other_http(server):
    key = server.cli("keys", "create", "--org", "sandbox-config-other").stdout.strip()
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


@pytest.fixture
def local_config(http) -> dict:
    answer = http.post("/v1/sandbox-config/", json={"config": {}})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _var(http, config_id: str, **body) -> httpx.Response:
    return http.post(f"/v1/sandbox-config/{config_id}/environment-variable", json=body)


def test_create_local_config_has_letta_shape(local_config):
    assert local_config["id"].startswith("sandbox-")
    assert local_config["type"] == "local"
    defaults = {"sandbox_dir": None, "use_venv": False, "venv_name": "venv", "pip_requirements": []}
    assert local_config["config"] == defaults
    assert set(local_config) >= {"organization_id", "created_at", "updated_at", "created_by_id", "last_updated_by_id"}


def test_second_create_updates_the_one_local_config(http, local_config):
    again = http.post("/v1/sandbox-config/", json={"config": {"venv_name": "other"}}).json()
    assert again["id"] == local_config["id"] and again["config"]["venv_name"] == "other"
    listed = http.get("/v1/sandbox-config/", params={"sandbox_type": "local"}).json()
    assert [c["id"] for c in listed] == [local_config["id"]]


def test_default_local_returns_the_existing_config(http, local_config):
    assert http.post("/v1/sandbox-config/local/default").json()["id"] == local_config["id"]


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"template": "tpl", "timeout": 300}, "e2b"),
        ({"timeout": 60, "language": "python"}, "modal"),
        ({"use_venv": True}, "use_venv"),
        ({"pip_requirements": [{"name": "requests"}]}, "pip_requirements"),
        ({"sandbox_dir": "/etc"}, "sandbox_dir"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_config_recalld_cannot_honour_is_400_and_changes_nothing(http, local_config, config, named):
    refused = http.post("/v1/sandbox-config/", json={"config": config})
    assert refused.status_code == 400 and named in refused.json()["detail"]
    patched = http.patch(f"/v1/sandbox-config/{local_config['id']}", json={"config": config})
    assert patched.status_code == 400 and named in patched.json()["detail"]
    listed = http.get("/v1/sandbox-config/").json()
    assert [c["config"] for c in listed if c["id"] == local_config["id"]] == [local_config["config"]]


def test_e2b_default_and_recreate_venv_are_400(http):
    assert "e2b" in http.post("/v1/sandbox-config/e2b/default").json()["detail"]
    assert http.post("/v1/sandbox-config/local/recreate-venv").status_code == 400


def test_list_with_unknown_sandbox_type_is_400(http):
    assert http.get("/v1/sandbox-config/", params={"sandbox_type": "docker"}).status_code == 400


def test_update_and_delete_unknown_config_is_404(http):
    assert http.patch(f"/v1/sandbox-config/{UNKNOWN_CONFIG_ID}", json={"config": {}}).status_code == 404
    assert http.delete(f"/v1/sandbox-config/{UNKNOWN_CONFIG_ID}").status_code == 404


def test_malformed_ids_are_422(http):
    assert http.patch("/v1/sandbox-config/sandbox-nope", json={}).status_code == 422
    assert http.delete("/v1/sandbox-config/environment-variable/sandbox-env-nope").status_code == 422


def test_env_var_crud(http, local_config):
    key = f"K_{uuid.uuid4().hex[:8].upper()}"
    created = _var(http, local_config["id"], key=key, value="v1", description="d")
    assert created.status_code == 200, created.text
    var = created.json()
    assert var["id"].startswith("sandbox-env-") and var["sandbox_config_id"] == local_config["id"]
    assert (var["key"], var["value"], var["description"]) == (key, "v1", "d")
    listed = http.get(f"/v1/sandbox-config/{local_config['id']}/environment-variable").json()
    assert var["id"] in [v["id"] for v in listed]
    patched = http.patch(f"/v1/sandbox-config/environment-variable/{var['id']}", json={"value": "v2"}).json()
    assert (patched["key"], patched["value"], patched["description"]) == (key, "v2", "d")
    assert http.delete(f"/v1/sandbox-config/environment-variable/{var['id']}").status_code == 200
    assert http.delete(f"/v1/sandbox-config/environment-variable/{var['id']}").status_code == 404
    listed = http.get(f"/v1/sandbox-config/{local_config['id']}/environment-variable").json()
    assert var["id"] not in [v["id"] for v in listed]


def test_duplicate_env_var_key_is_409_and_keeps_the_first(http, local_config):
    key = f"DUP_{uuid.uuid4().hex[:8].upper()}"
    first = _var(http, local_config["id"], key=key, value="first").json()
    assert _var(http, local_config["id"], key=key, value="second").status_code == 409
    listed = http.get(f"/v1/sandbox-config/{local_config['id']}/environment-variable").json()
    assert [v["value"] for v in listed if v["key"] == key] == ["first"]
    assert first["value"] == "first"


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "A=B", ""])
def test_env_var_with_unusable_key_is_4xx_and_not_stored(http, local_config, key):
    answer = _var(http, local_config["id"], key=key, value="v")
    assert answer.status_code in (400, 422)
    listed = http.get(f"/v1/sandbox-config/{local_config['id']}/environment-variable").json()
    assert key not in [v["key"] for v in listed]


def test_env_var_of_unknown_config_is_404(http):
    assert _var(http, UNKNOWN_CONFIG_ID, key="K", value="v").status_code == 404
    assert http.get(f"/v1/sandbox-config/{UNKNOWN_CONFIG_ID}/environment-variable").status_code == 404


def test_another_org_cannot_see_or_touch_a_config_or_its_variables(http, other_http, local_config):
    key = f"PRIVATE_{uuid.uuid4().hex[:8].upper()}"
    var = _var(http, local_config["id"], key=key, value="secret-value").json()
    assert local_config["id"] not in [c["id"] for c in other_http.get("/v1/sandbox-config/").json()]
    assert other_http.get(f"/v1/sandbox-config/{local_config['id']}/environment-variable").status_code == 404
    assert _var(other_http, local_config["id"], key="X", value="y").status_code == 404
    patch = other_http.patch(f"/v1/sandbox-config/environment-variable/{var['id']}", json={"value": "stolen"})
    assert patch.status_code == 404
    assert other_http.delete(f"/v1/sandbox-config/environment-variable/{var['id']}").status_code == 404
    assert other_http.delete(f"/v1/sandbox-config/{local_config['id']}").status_code == 404
    listed = http.get(f"/v1/sandbox-config/{local_config['id']}/environment-variable").json()
    assert [v["value"] for v in listed if v["key"] == key] == ["secret-value"]


def test_delete_config_deletes_its_variables(http, other_http):
    # A fresh organization's config, so deleting it leaves other tests' config alone.
    config = other_http.post("/v1/sandbox-config/local/default").json()
    var = _var(other_http, config["id"], key="GOES", value="away").json()
    assert other_http.delete(f"/v1/sandbox-config/{config['id']}").status_code == 200
    assert other_http.delete(f"/v1/sandbox-config/environment-variable/{var['id']}").status_code == 404
    assert config["id"] not in [c["id"] for c in other_http.get("/v1/sandbox-config/").json()]


def test_sandbox_config_routes_are_in_openapi(http):
    paths = http.get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/sandbox-config/"])
    assert {"patch", "delete"} <= set(paths["/v1/sandbox-config/{sandbox_config_id}"])
    assert {"post", "get"} <= set(paths["/v1/sandbox-config/{sandbox_config_id}/environment-variable"])
    assert {"patch", "delete"} <= set(paths["/v1/sandbox-config/environment-variable/{env_var_id}"])
