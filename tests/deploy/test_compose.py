"""docker-compose.yml (+ the GPU override): valid for Debian's docker-compose 1.29, and wired
together: the settings are the service's, the ports, mounts and URLs meet, the GPU stays optional.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import interpolate

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GPU = ROOT / "docker-compose.gpu.yml"


@pytest.fixture(scope="module")
def docker_compose(tool, tmp_path_factory):
    """``docker_compose(*args, files=...)`` runs Debian's docker-compose 1.29 with an empty .env file
    and none of the variables the compose files read set, so the files' own defaults apply."""
    binary = tool("docker-compose")
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ILCS_", "GRAFANA_", "PROMETHEUS_", "COMPOSE_"))}

    def run(*args: str, files: tuple[Path, ...] = (COMPOSE,)) -> subprocess.CompletedProcess[str]:
        cmd = [binary, "--project-directory", str(ROOT), "--env-file", str(env_file)]
        for f in files:
            cmd += ["-f", str(f)]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)

    return run


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE, GPU)], ids=["cpu", "gpu-override"])
def test_docker_compose_config_is_valid(docker_compose, files):
    result = docker_compose("config", "-q", files=files)
    assert result.returncode == 0, result.stderr


def test_docker_compose_rejects_an_invalid_file(docker_compose, tmp_path):
    """The check above can fail: docker-compose 1.29 refuses an unknown service key."""
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    restart: unless-stopped", "    restart_policy: unless-stopped", 1))
    result = docker_compose("config", "-q", files=(bad,))
    assert result.returncode != 0 and "restart_policy" in result.stderr


def test_environment_is_what_docker_compose_resolves(docker_compose, inspector_env, dockerfile_env):
    """The e2e test runs `ilcs serve` with ``inspector_env``: it is the container's, as docker-compose says."""
    result = docker_compose("config")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]["inspector"]["environment"]
    container = {**dockerfile_env, **{k: str(v) for k, v in resolved.items() if v is not None}}
    assert container == inspector_env


def _ilcs_names(compose_file: Path, dockerfile_env: dict[str, str]) -> set[str]:
    env = yaml.safe_load(compose_file.read_text())["services"]["inspector"].get("environment", {})
    return {k for k in [*env, *dockerfile_env] if k.startswith("ILCS_")}


def test_every_ilcs_variable_is_a_service_setting(dockerfile_env):
    """The service ignores unknown ILCS_ variables, so a misspelt one would silently do nothing."""
    from service.settings import Settings

    known = {f"ILCS_{name.upper()}" for name in Settings.model_fields}
    for compose_file in (COMPOSE, GPU):
        unknown = _ilcs_names(compose_file, dockerfile_env) - known
        assert not unknown, f"{compose_file.name} sets {sorted(unknown)}, which service/settings.py does not read"


def test_default_settings_are_valid(inspector_env, monkeypatch):
    from service.settings import Settings

    for name in list(os.environ):
        if name.startswith("ILCS_"):
            monkeypatch.delenv(name)
    for name, value in inspector_env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.device == "auto"
    assert str(settings.checkpoint) == "/opt/ilcs/checkpoints/ilcs_neu"


def test_gpu_is_reserved_only_in_the_override(compose):
    assert "deploy" not in compose["services"]["inspector"], "a GPU reservation in the base file fails on CPU hosts"
    gpu = yaml.safe_load(GPU.read_text())["services"]["inspector"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert interpolate(gpu["environment"]["ILCS_DEVICE"], {}) == "cuda"


def test_the_gpu_is_picked_by_device_ids_from_the_environment():
    """``ILCS_GPU`` picks the GPU the container sees (as cuda:0); ``count`` and ``device_ids`` exclude each other."""
    gpu = yaml.safe_load(GPU.read_text())["services"]["inspector"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert "count" not in device
    assert [interpolate(i, {}) for i in device["device_ids"]] == ["0"]
    assert [interpolate(i, {"ILCS_GPU": "2"}) for i in device["device_ids"]] == ["2"]
    assert interpolate(gpu["environment"]["ILCS_DEVICE"], {"ILCS_DEVICE": "cuda:0"}) == "cuda:0"


def _container_port(service: dict) -> int:
    (mapping,) = service["ports"]
    return int(mapping.rsplit(":", 1)[1])


def test_services_are_wired_together(compose, prometheus_config, runtime_stage):
    services = compose["services"]
    assert set(services) == {"inspector", "balancer", "prometheus", "grafana"}
    expose = next(int(i.args) for i in runtime_stage if i.keyword == "EXPOSE")
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", f"{name} has no restart policy"
        image = service.get("image", "")
        if "build" not in service:
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image version ({image})"

    # Replicas: the inspector publishes no host port (two replicas would clash on it) and has no fixed
    # container name; clients reach it through the balancer, which publishes the service's port.
    inspector = services["inspector"]
    assert "ports" not in inspector and "container_name" not in inspector
    assert [int(p) for p in inspector["expose"]] == [expose]
    assert interpolate(services["balancer"]["ports"][0], {}) == "0.0.0.0:8000:8000"

    # Prometheus finds every replica by the compose service name (Docker's DNS), on its container port.
    (job,) = prometheus_config["scrape_configs"]
    assert "static_configs" not in job, "a fixed target misses every replica but one"
    (dns,) = job["dns_sd_configs"]
    assert (dns["names"], dns["type"], dns["port"]) == (["inspector"], "A", expose)
    assert job.get("metrics_path", "/metrics") == "/metrics"

    # Prometheus reads the mounted config.
    prom = services["prometheus"]
    config_path = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    assert f"./deploy/prometheus/prometheus.yml:{config_path}:ro" in prom["volumes"]

    # Grafana: provisioning and dashboards mounted where its provisioning files say.
    grafana = services["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/ilcs.yml").read_text())["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == "./deploy/grafana/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_dir + "/") and (ROOT / "deploy/grafana/dashboards" / Path(home).name).is_file()
    (datasource,) = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == f"http://prometheus:{_container_port(prom)}"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer", "anonymous viewers must be read-only"


def test_healthcheck_is_the_images(compose, runtime_stage):
    probe = compose["services"]["inspector"]["healthcheck"]["test"]
    image_probe = next(i.args for i in runtime_stage if i.keyword == "HEALTHCHECK")
    assert probe[0] == "CMD" and all(part in image_probe for part in probe[1:])


# ---- hardening ---------------------------------------------------------------------------------


def _seconds(duration: str) -> float:
    units = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    number, unit = re.fullmatch(r"([\d.]+)(ms|s|m|h)", duration).groups()
    return float(number) * units[unit]


def test_monitoring_is_health_checked_and_started_in_order(compose):
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        probe = services[name]["healthcheck"]["test"]
        assert probe[0] == "CMD" and probe[1] == "wget", f"{name}: a probe its image can run (busybox wget)"
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    # Prometheus waits for nothing but the inspector's start: it must run, and alert, when the inspector is down.
    assert services["prometheus"]["depends_on"] == {"inspector": {"condition": "service_started"}}


def test_monitoring_listens_on_loopback_by_default(compose):
    for name in ("prometheus", "grafana"):
        (mapping,) = compose["services"][name]["ports"]
        assert interpolate(mapping, {}).startswith("127.0.0.1:"), f"{name} is open to the network: {mapping}"


def test_grafana_admin_password_comes_from_a_secret(compose):
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env, "a password in the compose file (or its default) is public"
    (secret,) = grafana["secrets"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"/run/secrets/{secret}"
    source = interpolate(compose["secrets"][secret]["file"], {})
    assert (ROOT / source).parent.is_dir() and source.removeprefix("./deploy/grafana/") in (
        (ROOT / "deploy/grafana/.gitignore").read_text().split()
    ), "the password file must stay out of git"


def test_stop_grace_period_outlasts_the_drain(compose, inspector_env):
    """Docker kills the container after stop_grace_period: the service's longest drain must fit in it."""
    from service.settings import Settings

    settings = Settings(**{k.removeprefix("ILCS_").lower(): v for k, v in inspector_env.items()})
    longest_drain = settings.drain_s + settings.request_timeout_s + 1  # service.run.DrainingServer's bound
    assert settings.drain_s > 0, "with no drain, load balancers still send requests to a stopping inspector"
    assert _seconds(compose["services"]["inspector"]["stop_grace_period"]) > longest_drain


def test_every_service_has_limits_and_rotated_logs(compose):
    for name, service in compose["services"].items():
        assert interpolate(str(service["mem_limit"]), {}), f"{name} has no memory limit"
        assert "cpus" in service, f"{name} has no CPU limit setting"
        logging = service["logging"]
        assert logging["driver"] == "json-file" and {"max-size", "max-file"} <= set(logging["options"]), name


def test_gpu_override_builds_the_cuda_image_and_stops_retrying(compose):
    base = compose["services"]["inspector"]
    gpu = yaml.safe_load(GPU.read_text())["services"]["inspector"]
    assert "download.pytorch.org/whl/cpu" in interpolate(base["build"]["args"]["TORCH_INDEX_URL"], {})
    assert interpolate(gpu["build"]["args"]["TORCH_INDEX_URL"], {}) == "https://pypi.org/simple"
    assert interpolate(gpu["image"], {}) != interpolate(base["image"], {}), "the two variants would share a tag"
    assert gpu["restart"].startswith("on-failure:"), "a host without a GPU must not restart it forever"


# ---- replicas behind the balancer -----------------------------------------------------------


def test_balancer_runs_the_nginx_config_in_front_of_every_replica(compose, inspector_env, runtime_stage):
    """The files tests/deploy/test_scale_out.py runs are the ones mounted, and they meet the service's settings."""
    from service.settings import Settings

    balancer = compose["services"]["balancer"]
    nginx_dir = ROOT / "deploy" / "nginx"
    assert "./deploy/nginx/ilcs.conf:/etc/nginx/conf.d/default.conf:ro" in balancer["volumes"]
    assert "./deploy/nginx/servers.conf:/etc/nginx/ilcs/servers.conf:ro" in balancer["volumes"]
    proxy = (nginx_dir / "ilcs.conf").read_text()
    assert "include ilcs/servers.conf;" in proxy  # relative to the image's /etc/nginx
    assert re.search(r"^\s*listen 8000;$", proxy, re.M) and _container_port(balancer) == 8000
    expose = next(int(i.args) for i in runtime_stage if i.keyword == "EXPOSE")
    assert re.search(rf"^server inspector:{expose} resolve\b", (nginx_dir / "servers.conf").read_text(), re.M)
    assert balancer["depends_on"] == {"inspector": {"condition": "service_started"}}
    assert "/nginx-health" in balancer["healthcheck"]["test"][-1] and "location = /nginx-health" in proxy

    # nginx waits longer than the service's own deadline and its held 503, so the service's answer is the one sent.
    settings = Settings(**{k.removeprefix("ILCS_").lower(): v for k, v in inspector_env.items()})
    read_timeout = _seconds(re.search(r"proxy_read_timeout (\S+);", proxy)[1])
    assert read_timeout > settings.request_timeout_s + settings.refusal_delay_s
    # nginx lets bodies a little over the service's limit through: clients see the service's problem+json 413.
    max_body = re.search(r"client_max_body_size (\d+)m;", proxy)[1]
    assert int(max_body) * 2**20 > settings.max_body_bytes
    # Refusals and broken connections are sent on to another replica, POSTs included; slow answers are not.
    retry = re.search(r"proxy_next_upstream ([^;]+);", proxy)[1].split()
    assert {"error", "http_503", "non_idempotent"} <= set(retry) and "timeout" not in retry
