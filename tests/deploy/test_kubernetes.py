"""deploy/k8s/: every manifest validates (strictly, offline) for the oldest and the newest Kubernetes version
kubernetes-validate ships; the CRD-based ServiceMonitor is checked field by field; kustomize builds; names,
labels, probes, the drain budget and the autoscaler agree with each other and with the image."""

from __future__ import annotations

import re
import shutil
import subprocess

import kubernetes_validate
import pytest

from tests.deploy.artefacts import (
    CRD_MANIFESTS,
    K8S,
    NOT_IN_KUSTOMIZATION,
    container,
    image_command,
    k8s,
    k8s_documents,
    k8s_files,
    load_yaml,
    load_yaml_all,
    runtime_stage,
    without_init,
)

# The oldest version the manifests support (native sidecar-free, autoscaling/v2, policy/v1) and the newest the
# validator knows. Pinned, so a new kubernetes-validate release cannot change what passes.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
PROMETHEUS_DURATION = re.compile(r"^((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")


def _core_manifests():
    return [p for p in k8s_files() if p not in CRD_MANIFESTS]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(version):
    failures = []
    for path in _core_manifests():
        for doc in k8s_documents(path):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{path.relative_to(K8S)} {doc['kind']}: {e.message} at {list(e.path)}")
            except kubernetes_validate.SchemaNotFoundError:
                failures.append(f"{path.relative_to(K8S)}: no schema for {doc['apiVersion']} {doc['kind']} "
                                "(a CRD kind belongs in optional/, listed in CRD_MANIFESTS)")
    assert not failures, "\n".join(failures)


def test_every_manifest_is_in_a_kustomization():
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed = load_yaml(kustomization.read_text())["resources"]
        for name in listed:
            assert (kustomization.parent / name).is_file(), f"{kustomization}: {name} is missing"
        for path in kustomization.parent.glob("*.yaml"):
            if path.name != "kustomization.yaml" and path not in NOT_IN_KUSTOMIZATION:
                assert path.name in listed, f"{path.relative_to(K8S)} is in no kustomization"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
@pytest.mark.parametrize("directory", [".", "optional", "prometheus-adapter"])
def test_kustomize_builds(directory):
    result = subprocess.run(["kubectl", "kustomize", str(K8S / directory)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in load_yaml_all(result.stdout) if doc]
    assert built
    if directory == ".":
        kinds = {doc["kind"] for doc in built}
        assert {"Deployment", "Service", "ConfigMap", "Job", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
        # What kustomize made of them (images set, names kept) still validates.
        for doc in built:
            kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)
        images = {c["image"] for doc in built if doc["kind"] in ("Deployment", "Job")
                  for c in doc["spec"]["template"]["spec"]["containers"]}
        assert len(images) == 1, f"the Deployment and the migration Job must run the same image: {images}"


def test_servicemonitor_fields():
    (monitor,) = k8s_documents(K8S / "optional" / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                         "podTargetLabels", "sampleLimit"}
    service = k8s("Service", "recalld")
    assert set(spec["selector"]) == {"matchLabels"}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(), \
        "the ServiceMonitor selects Services by labels the recalld Service does not carry"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels",
                                 "relabelings", "metricRelabelings"}
        assert endpoint["port"] in port_names
        assert endpoint["path"].startswith("/")
        for key in ("interval", "scrapeTimeout"):
            assert PROMETHEUS_DURATION.match(endpoint[key]), endpoint[key]
        assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])


def _seconds(duration: str) -> float:
    match = PROMETHEUS_DURATION.match(duration)
    h, m, s, ms = (int(match.group(i) or 0) for i in (2, 4, 6, 8))
    return h * 3600 + m * 60 + s + ms / 1000


def test_selectors_pick_the_server_pods_and_only_them():
    deployment = k8s("Deployment", "recalld")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    job_labels = k8s("Job", "recalld-migrate")["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Service": k8s("Service", "recalld")["spec"]["selector"],
        "PodDisruptionBudget": k8s("PodDisruptionBudget", "recalld")["spec"]["selector"]["matchLabels"],
    }
    for owner, chosen in selectors.items():
        assert chosen.items() <= pod_labels.items(), owner
        assert not chosen.items() <= job_labels.items(), f"the {owner} would select the migration Job's pod"
    target = k8s("HorizontalPodAutoscaler", "recalld")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "recalld")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_settings_and_keys_come_from_the_configmap_and_the_secret():
    for owner in (k8s("Deployment", "recalld"), k8s("Job", "recalld-migrate")):
        sources = container(owner)["envFrom"]
        assert {"configMapRef": {"name": "recalld-config"}} in sources
        assert {"secretRef": {"name": "recalld-secrets"}} in sources
    secret = k8s("Secret", "recalld-secrets")
    assert "RECALLD_PG_URI" in secret["stringData"]
    # Connection strings and keys are secret, never in the ConfigMap.
    config = k8s("ConfigMap", "recalld-config")["data"]
    assert not any(re.search(r"URI|URL|KEY|PASSWORD", name) for name in config), config


def test_the_migration_job_runs_recalld_migrate_from_the_same_image():
    job, deployment = k8s("Job", "recalld-migrate"), k8s("Deployment", "recalld")
    migrate = container(job)
    assert migrate["image"] == container(deployment)["image"]
    assert "command" not in migrate, "keep the image's entrypoint (tini -- recalld)"
    assert without_init(runtime_stage().exec_form("ENTRYPOINT")) + migrate["args"] == ["recalld", "migrate"]
    assert "command" not in container(deployment) and "args" not in container(deployment)
    assert without_init(image_command()) == ["recalld", "serve"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_probes_are_http_on_the_named_port():
    pod = container(k8s("Deployment", "recalld"))
    port_names = {p["name"] for p in pod["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert pod[probe]["httpGet"]["port"] in port_names
    assert pod["readinessProbe"]["httpGet"]["path"] == "/v1/ready/"
    assert pod["startupProbe"]["httpGet"]["path"] == "/v1/ready/"
    assert pod["livenessProbe"]["httpGet"]["path"] == "/v1/health/"
    # Liveness never restarts a pod that is merely draining or warming up.
    assert pod["livenessProbe"]["httpGet"]["path"] != pod["readinessProbe"]["httpGet"]["path"]


def test_termination_grace_covers_prestop_drain_grace_and_drain_timeout():
    deployment = k8s("Deployment", "recalld")
    pod_spec = deployment["spec"]["template"]["spec"]
    pre_stop = container(deployment)["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        pre_stop_s = pre_stop["sleep"]["seconds"]
    else:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep"
        pre_stop_s = float(command[1])
    config = k8s("ConfigMap", "recalld-config")["data"]
    drain_s = float(config["RECALLD_DRAIN_GRACE"]) + float(config["RECALLD_DRAIN_TIMEOUT"])
    margin_s = pod_spec["terminationGracePeriodSeconds"] - pre_stop_s - drain_s
    assert 5 <= margin_s <= 30, f"margin {margin_s} s after preStop {pre_stop_s} s and drain {drain_s} s"
    # The HPA removes pods no faster than they drain.
    scale_down = k8s("HorizontalPodAutoscaler", "recalld")["spec"]["behavior"]["scaleDown"]
    assert all(p["periodSeconds"] >= pod_spec["terminationGracePeriodSeconds"] for p in scale_down["policies"])


def test_pods_run_as_the_images_non_root_user():
    uid = int(runtime_stage().last("USER").split(":")[0])
    for owner in (k8s("Deployment", "recalld"), k8s("Job", "recalld-migrate")):
        pod_spec = owner["spec"]["template"]["spec"]
        assert pod_spec["securityContext"]["runAsNonRoot"] is True
        assert pod_spec["securityContext"]["runAsUser"] == uid
        assert pod_spec["enableServiceLinks"] is False, "service links would set RECALLD_PORT=tcp://…"
        security = container(owner)["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in container(owner)["volumeMounts"]}
        assert {"/tmp", runtime_stage().env["RECALLD_DIR"]} <= mounts, "writable paths on a read-only root"


def test_the_hpa_scales_on_cpu_and_on_recalld_turns():
    hpa = k8s("HorizontalPodAutoscaler", "recalld")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
    by_type = {m["type"]: m for m in spec["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    assert by_type["Resource"]["resource"]["target"]["type"] == "Utilization"
    pods = by_type["Pods"]["pods"]
    assert pods["metric"]["name"] == "recalld_turns_queued"
    assert pods["target"]["type"] == "AverageValue" and int(pods["target"]["averageValue"]) >= 1
    # CPU utilisation is relative to the request, so the request must be set.
    assert container(k8s("Deployment", "recalld"))["resources"]["requests"]["cpu"]


def test_the_adapter_rule_serves_the_hpa_metric_per_pod():
    config = k8s("ConfigMap", "adapter-config")
    (rule,) = load_yaml(config["data"]["config.yaml"])["rules"]
    assert rule["seriesQuery"].startswith("recalld_turns_queued{")
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert re.fullmatch(rule["name"]["matches"], "recalld_turns_queued")
    assert rule["name"]["as"] == "recalld_turns_queued"
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in rule["metricsQuery"]


TOOL_SANDBOX_OVERLAY = K8S.parent / "k8s-tool-sandbox"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_tool_sandbox_variant_builds_validates_and_enables_bwrap(version):
    result = subprocess.run(["kubectl", "kustomize", str(TOOL_SANDBOX_OVERLAY)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in load_yaml_all(result.stdout) if doc]
    for doc in built:
        kubernetes_validate.validate(doc, version, strict=True)
    (deployment,) = [doc for doc in built if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostUsers"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] in ("Unconfined", "Localhost")
    assert pod["securityContext"]["runAsNonRoot"] is True  # the rest of the hardening stays
    (server,) = pod["containers"]
    assert server["securityContext"]["procMount"] == "Unmasked"
    assert server["securityContext"]["appArmorProfile"]["type"] in ("Unconfined", "Localhost")
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "RECALLD_TOOL_SANDBOX", "value": "bwrap"} in server["env"]
    # Everything else of the base is there too.
    assert {"Service", "ConfigMap", "Job", "HorizontalPodAutoscaler"} <= {doc["kind"] for doc in built}
