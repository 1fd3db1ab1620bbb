"""The artefacts against a real server started like the image: every probe and healthcheck answers, readiness
turns 503 while draining, and the metric the autoscaler scales on is exported."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
from letta_client import Letta
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.artefacts import (
    COMPOSE_DIR,
    container,
    healthcheck_command,
    image_command,
    k8s,
    load_yaml,
    raw_compose,
    without_init,
)
from tests.deploy.conftest import image_argv
from tests.servers import free_port

_URL_PATH = re.compile(r"http://127\.0\.0\.1:[^/]*(/[\w/.-]*)")


def _healthcheck_path(command: list[str]) -> str:
    match = _URL_PATH.search(" ".join(command))
    assert match, f"no URL in healthcheck {command}"
    return match.group(1)


def probe_paths() -> dict[str, str]:
    """Every HTTP path an orchestrator, balancer or scraper calls on recalld, by where it is configured."""
    paths = {"Dockerfile HEALTHCHECK": _healthcheck_path(healthcheck_command())}
    services = raw_compose()["services"]
    paths["compose recalld healthcheck"] = _healthcheck_path(services["recalld"]["healthcheck"]["test"])
    # nginx's own healthcheck goes through to a replica.
    paths["compose nginx healthcheck"] = _healthcheck_path(services["nginx"]["healthcheck"]["test"])
    pod = container(k8s("Deployment", "recalld"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        paths[f"k8s {probe}"] = pod[probe]["httpGet"]["path"]
    annotations = k8s("Deployment", "recalld")["spec"]["template"]["metadata"]["annotations"]
    paths["k8s prometheus.io/path"] = annotations["prometheus.io/path"]
    for endpoint in k8s("ServiceMonitor", "recalld")["spec"]["endpoints"]:
        paths["ServiceMonitor endpoint"] = endpoint["path"]
    for job in load_yaml((COMPOSE_DIR / "prometheus.yml").read_text())["scrape_configs"]:
        paths[f"prometheus job {job['job_name']}"] = job.get("metrics_path", "/metrics")
    return paths


def test_the_server_runs_the_images_command():
    assert without_init(image_command()) == ["recalld", "serve"]
    argv = image_argv()
    assert argv[1:] == ["serve"] and argv[0].endswith("recalld")


def test_every_probe_and_healthcheck_path_answers_200_without_a_key(image_server):
    # The pod runs with RECALLD_AUTH=required (the ConfigMap): kubelet and Prometheus send no key.
    assert image_server.env["RECALLD_AUTH"] == "required"
    assert httpx.get(f"{image_server.url}/v1/agents/", timeout=5).status_code == 401
    for where, path in probe_paths().items():
        response = httpx.get(f"{image_server.url}{path}", timeout=5)
        assert response.status_code == 200, f"{where}: GET {path} answered {response.status_code}"


def _run_healthcheck(command: list[str], port: int) -> subprocess.CompletedProcess:
    if command[0] == "CMD":
        command = command[1:]
    assert command[0] == "python", command
    env = {"RECALLD_LISTEN_PORT": str(port), "PATH": ""}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=20)


def test_healthcheck_commands_pass_on_a_serving_instance_and_fail_without_one(image_server):
    compose_check = raw_compose()["services"]["recalld"]["healthcheck"]["test"]
    for command in (healthcheck_command(), compose_check):
        assert _run_healthcheck(command, image_server.port).returncode == 0, command
    # Nothing listens on a free port: the check fails, as for a stopped server.
    assert _run_healthcheck(healthcheck_command(), free_port()).returncode != 0


def _samples(url: str) -> dict[str, float]:
    """Exported series by name, summed over their label sets."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _adapter_rules() -> list[dict]:
    return load_yaml(k8s("ConfigMap", "adapter-config")["data"]["config.yaml"])["rules"]


def test_autoscaling_metrics_are_exported_after_a_turn(image_server):
    key = image_server.cli("keys", "create", "--org", "deploy-tests").stdout.strip()
    client = Letta(base_url=image_server.url, api_key=key, max_retries=0, timeout=30)
    agent = client.agents.create(model="openai/gpt-4o-mini")
    reply = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "scale me"}])
    assert any(m.message_type == "assistant_message" for m in reply.messages)

    exported = _samples(image_server.url)
    assert exported["recalld_turns_total"] >= 1
    hpa_metrics = [m["pods"]["metric"]["name"] for m in k8s("HorizontalPodAutoscaler", "recalld")["spec"]["metrics"]
                   if m["type"] == "Pods"]
    assert hpa_metrics, "the HPA scales on no recalld metric"
    rules = _adapter_rules()
    for rule in rules:
        series = re.match(r"\s*([a-zA-Z_:][\w:]*)", rule["seriesQuery"]).group(1)
        assert series in exported, f"adapter rule reads {series}, which /metrics does not export"
    served = {rule["name"]["as"] for rule in rules}
    for name in hpa_metrics:
        assert name in served, f"the HPA reads {name}, which no prometheus-adapter rule serves"
    # Idle again after the turn: the gauge falls back to 0, so an idle deployment scales down.
    deadline = time.monotonic() + 5
    while _samples(image_server.url)["recalld_turns_queued"] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _samples(image_server.url)["recalld_turns_queued"] == 0


def test_readiness_answers_503_while_draining_and_the_instance_still_serves(start_image_server):
    grace_s = 4.0
    server = start_image_server(RECALLD_DRAIN_GRACE=str(grace_s), RECALLD_DRAIN_TIMEOUT="5")
    assert httpx.get(f"{server.url}/v1/ready/", timeout=5).status_code == 200
    server.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()

    # 503 at once (the signal is handled within moments)...
    while httpx.get(f"{server.url}/v1/ready/", timeout=5).status_code != 503:
        assert time.monotonic() - sent < 2.0, "readiness still 200 two seconds after SIGTERM"
        time.sleep(0.02)
    # ...while the instance is draining, not gone: the health route (liveness) and the API still answer...
    assert httpx.get(f"{server.url}/v1/health/", timeout=5).status_code == 200
    assert httpx.get(f"{server.url}/v1/ready/", timeout=5).json()["status"] == "draining"
    # ...and 503 it stays until the grace period ends.
    statuses = [httpx.get(f"{server.url}/v1/ready/", timeout=5).status_code]
    while time.monotonic() - sent < grace_s - 1.5:
        statuses.append(httpx.get(f"{server.url}/v1/ready/", timeout=5).status_code)
        time.sleep(0.1)
    assert set(statuses) == {503}, statuses

    server.process.wait(timeout=grace_s + 5 + 10)
    assert time.monotonic() - sent >= grace_s - 0.2
