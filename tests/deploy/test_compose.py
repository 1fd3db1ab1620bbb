"""deploy/compose.yaml: the Compose specification's schema, a stack that scales with --scale, migrations once,
health-gated start-up, limits that agree with Kubernetes, and profiles that wire what they claim.
tests/cluster/test_cluster.py runs the same topology as processes (N instances, nginx from the same template,
PostgreSQL, Redis)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.deploy import compose_nginx
from tests.deploy.artefacts import (
    COMPOSE,
    COMPOSE_DIR,
    compose,
    container,
    k8s,
    load_yaml,
    read_env_file,
    runtime_stage,
    service_environment,
)

# Replicas the default pool settings are sized for within PostgreSQL's max_connections (compose.yaml says so).
SIZED_FOR_REPLICAS = 12
PG_HEADROOM_CONNECTIONS = 10


def _check_jsonschema() -> str:
    return str(Path(sys.executable).parent / "check-jsonschema")


def test_compose_file_validates_against_the_compose_specification():
    # The schema vendored in check-jsonschema: no network.
    result = subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_nginx_conf_is_the_template_rendered():
    assert compose_nginx.RENDERED.read_text() == compose_nginx.render(), (
        "deploy/compose/nginx.conf differs from deploy/nginx.conf rendered for Compose; regenerate it: "
        ".venv/bin/python -m tests.deploy.compose_nginx > deploy/compose/nginx.conf")


def test_nginx_balances_over_every_replica_of_the_service():
    services = compose()["services"]
    conf = compose_nginx.RENDERED.read_text()
    upstream = re.search(r"upstream recalld \{(.*?)\n    \}", conf, re.S).group(1)
    assert re.search(r"^\s*zone \w+ \d+k;", upstream, re.M)
    assert re.search(r"^\s*resolver 127\.0\.0\.11\b", upstream, re.M), "Docker's embedded DNS"
    assert re.search(rf"^\s*server recalld:{compose_nginx.PORT} resolve\b", upstream, re.M)
    assert "recalld" in services
    # `resolve` in an upstream is open-source nginx 1.27.3 and later.
    version = re.match(r"nginx:(\d+)\.(\d+)", services["nginx"]["image"])
    assert version and (int(version.group(1)), int(version.group(2))) >= (1, 28)
    mounts = services["nginx"]["volumes"]
    assert "./compose/nginx.conf:/etc/nginx/nginx.conf:ro" in mounts


def test_recalld_scales_with_the_scale_flag():
    recalld = compose()["services"]["recalld"]
    assert "container_name" not in recalld
    assert "ports" not in recalld, "host ports would collide between replicas"
    assert recalld["expose"] == ["8283"]


def test_migrations_run_once_before_any_replica():
    services = compose()["services"]
    migrate, recalld = services["migrate"], services["recalld"]
    assert migrate["command"] == ["migrate"]
    assert migrate["image"] == recalld["image"]
    assert migrate["restart"] == "no"
    assert "replicas" not in migrate.get("deploy", {})
    assert recalld["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["environment"] == recalld["environment"]


def test_every_dependency_is_waited_for_by_its_health_or_completion():
    services = compose()["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health, it has none"
            # Optional dependencies are exactly those on services of a profile.
            assert rule.get("required", True) == ("profiles" not in services[dependency]), (name, dependency)
    for name in ("postgres", "redis", "recalld"):
        assert "healthcheck" in services[name]
    assert services["nginx"]["depends_on"]["recalld"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")


def test_ports_agree_across_dockerfile_compose_nginx_and_kubernetes():
    port = int(runtime_stage().env["RECALLD_LISTEN_PORT"])
    assert runtime_stage().last("EXPOSE") == str(port)
    services = compose()["services"]
    assert services["recalld"]["expose"] == [str(port)]
    assert compose_nginx.PORT == port
    assert f"listen {port};" in compose_nginx.RENDERED.read_text()
    published = services["nginx"]["ports"][0]
    assert published.endswith(f":{port}")
    assert f":{port}/" in " ".join(services["nginx"]["healthcheck"]["test"])
    pod = container(k8s("Deployment", "recalld"))
    assert [p["containerPort"] for p in pod["ports"]] == [port]
    assert {e["name"]: e["value"] for e in pod["env"]}["RECALLD_LISTEN_PORT"] == str(port)
    service_port = k8s("Service", "recalld")["spec"]["ports"][0]
    assert service_port["port"] == port and service_port["targetPort"] == pod["ports"][0]["name"]
    annotations = k8s("Deployment", "recalld")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    prometheus = load_yaml((COMPOSE_DIR / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["dns_sd_configs"][0]["port"] == port


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_stop_grace_period_covers_the_drain():
    recalld = compose()["services"]["recalld"]
    env = service_environment(recalld)
    needed = float(env["RECALLD_DRAIN_GRACE"]) + float(env["RECALLD_DRAIN_TIMEOUT"]) + 5
    assert _seconds(recalld["stop_grace_period"]) >= needed


def _cpus(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _mebibytes(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", value).groups()
    return float(number) * {"M": 1, "Mi": 1, "G": 1024, "Gi": 1024}[unit]


def test_resource_limits_agree_with_kubernetes():
    resources = compose()["services"]["recalld"]["deploy"]["resources"]
    pod = container(k8s("Deployment", "recalld"))["resources"]
    assert _cpus(resources["limits"]["cpus"]) == _cpus(pod["limits"]["cpu"])
    assert _mebibytes(resources["limits"]["memory"]) == _mebibytes(pod["limits"]["memory"])
    assert _cpus(resources["reservations"]["cpus"]) == _cpus(pod["requests"]["cpu"])
    assert _mebibytes(resources["reservations"]["memory"]) == _mebibytes(pod["requests"]["memory"])


def test_default_pools_fit_postgres_max_connections():
    services = compose()["services"]
    env = service_environment(services["recalld"])
    per_replica = int(env["RECALLD_PG_POOL_SIZE"]) + int(env["RECALLD_PG_MAX_OVERFLOW"])
    command = services["postgres"]["command"]
    max_connections = int(next(arg.split("=")[1] for arg in command if arg.startswith("max_connections=")))
    assert SIZED_FOR_REPLICAS * per_replica + PG_HEADROOM_CONNECTIONS <= max_connections


def test_pgbouncer_profile_puts_pgbouncer_in_transaction_mode_and_recalld_pooling_off():
    variables = read_env_file(COMPOSE_DIR / "pgbouncer.env")
    services = compose(variables)["services"]
    env = service_environment(services["recalld"])
    host = re.match(r"postgresql://[^@]+@([^:/]+)", env["RECALLD_PG_URI"]).group(1)
    assert host == "pgbouncer" and services[host]["profiles"] == ["pgbouncer"]
    assert env["RECALLD_DISABLE_POOLING"] == "true"
    pgbouncer = service_environment(services["pgbouncer"])
    assert pgbouncer["POOL_MODE"] == "transaction"
    assert pgbouncer["DB_HOST"] == "postgres"
    # Without the profile, recalld goes to PostgreSQL directly and keeps its pool.
    direct = service_environment(compose()["services"]["recalld"])
    assert "@postgres:5432/" in direct["RECALLD_PG_URI"] and direct["RECALLD_DISABLE_POOLING"] == "false"


def test_observability_profile_sends_traces_to_the_collector_and_scrapes_every_replica():
    variables = read_env_file(COMPOSE_DIR / "observability.env")
    services = compose(variables)["services"]
    endpoint = service_environment(services["recalld"])["RECALLD_OTEL_ENDPOINT"]
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", endpoint).groups()
    assert services[host]["profiles"] == ["observability"] and port in services[host]["expose"]
    collector = load_yaml((COMPOSE_DIR / "otel-collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(f":{port}")
    assert "otlp" in collector["service"]["pipelines"]["traces"]["receivers"]
    assert services["prometheus"]["profiles"] == ["observability"]
    job = load_yaml((COMPOSE_DIR / "prometheus.yml").read_text())["scrape_configs"][0]
    assert job["dns_sd_configs"][0]["names"] == ["recalld"]
    # Off by default: an empty endpoint disables tracing.
    assert service_environment(compose()["services"]["recalld"])["RECALLD_OTEL_ENDPOINT"] == ""


def test_config_files_the_stack_mounts_exist():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).is_file(), f"{name} mounts missing {source}"
