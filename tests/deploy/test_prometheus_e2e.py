"""End to end, without Docker: the container's command, a real Prometheus, every dashboard query.

1. ``ilcs serve`` starts as the image's CMD does, with the container's environment
   (Dockerfile ENV + docker-compose.yml's ``environment`` at their defaults), only
   host, port and checkpoint changed: 127.0.0.1, a free port, a tiny checkpoint. It must
   answer /readyz.
2. A real ``prometheus`` starts on 127.0.0.1 with deploy/prometheus/prometheus.yml, only
   the targets (DNS discovery of compose's ``inspector`` replicas: here, the one) and the scrape
   interval (1 s) rewritten, and the alert rules of deploy/prometheus/alerts.yml without their
   ``for:`` (so they fire within the test).
3. A client sends classify requests the three ways a PLC or gateway does (multipart,
   raw PNG body, raw gray frame), one through the v2 protocol and some bad ones, the whole time
   Prometheus is polled.
4. Through Prometheus' HTTP API: the target is up, and every query of the Grafana dashboard,
   with its variables substituted as Grafana would, returns data (the Alerts row's too: the
   untrained tiny model is low-confidence on everything, so ILCSLowConfidence fires).
5. Shift counts: before any image, every class's ``ilcs_predictions_total`` is in Prometheus
   at 0; after a known number of answers, the dashboard's count per class over the shift is
   exactly what the client was answered, classes never predicted included (as 0).

Nothing is timed: each wait polls with a generous deadline and stops as soon as it can.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
SAMPLES = sorted((ROOT / "samples").glob("*.png"))
SCRAPE_INTERVAL = "1s"
# What Grafana puts in for its built-in variables (with a 1 s scrape interval $__rate_interval would be 4 s;
# a longer window only makes the check more forgiving, never vacuous: an empty selector stays empty).
GRAFANA_BUILTINS = {"__rate_interval": "30s", "__interval": "5s", "__range": "1h"}
STARTUP_DEADLINE_S = 180  # import torch, load, warm up: slow on a busy 2-core CI machine
DATA_DEADLINE_S = 180


def wait_until(what: str, check: Callable[[], Any], deadline_s: float, alive: Callable[[], str | None]) -> Any:
    """Poll ``check`` until it returns something truthy; fail after the deadline or when a process died."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        died = alive()
        if died:
            pytest.fail(f"while waiting for {what}: {died}")
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {deadline_s} s; last answer: {last!r}")


class Process:
    """A child process whose output goes to a file, for the failure message."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(log, "wb")  # closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT, cwd=log.parent)

    def died(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._out.close()


@contextlib.contextmanager
def running(name: str, argv: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[Process]:
    """Start ``argv``, wait until ``ready_url`` answers 200, stop it on exit; its log shows when a test fails."""
    proc = Process(name, argv, env, log)
    try:

        def ready() -> bool:
            return httpx.get(ready_url, timeout=5).status_code == 200

        wait_until(f"{name}: {ready_url}", ready, STARTUP_DEADLINE_S, proc.died)
        yield proc
    finally:
        proc.stop()
        print(f"--- {name} log (end) ---\n{proc.tail()}")  # pytest shows it only for a failed test


@pytest.fixture(scope="module")
def inspector(free_port, dockerfile_cmd, inspector_env, tiny_checkpoint, tmp_path_factory) -> Iterator[str]:
    """The service as the container runs it; yields its base URL once /readyz says ready."""
    argv = list(dockerfile_cmd)
    # The console script of this environment, as /opt/venv/bin/ilcs is in the image.
    ilcs = shutil.which(argv[0], path=str(Path(sys.executable).parent)) or shutil.which(argv[0])
    assert ilcs, f"no {argv[0]!r} command beside {sys.executable}: install the project (pip install -e .)"
    port = free_port()
    argv[0] = ilcs
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILCS_")}
    env.update(inspector_env)
    assert (env["ILCS_HOST"], env["ILCS_PORT"]) == ("0.0.0.0", "8000")  # the image's; here, loopback and a free port:
    env.update(ILCS_HOST="127.0.0.1", ILCS_PORT=str(port))
    assert env["ILCS_CHECKPOINT"] == "/opt/ilcs/checkpoints/ilcs_neu"  # the image's path; here, a tiny one:
    env["ILCS_CHECKPOINT"] = str(tiny_checkpoint)
    env["ILCS_THREADS"] = "1"  # a light neighbour on a shared CI machine
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("inspector") / "inspector.log"
    with running("ilcs serve", argv, env, log, f"{url}/readyz"):
        yield url


@pytest.fixture
def prometheus_binary(tool) -> str:
    return tool("prometheus")


@pytest.fixture
def prometheus(prometheus_binary, free_port, prometheus_config, inspector, tmp_path) -> Iterator[str]:
    """A real Prometheus scraping the inspector with deploy/prometheus/prometheus.yml; yields its URL."""
    binary = prometheus_binary  # first argument: skips before the inspector starts when it is missing
    work = tmp_path / "prometheus"
    (work / "data").mkdir(parents=True)
    config_file = work / "prometheus.yml"
    config = rewrite_scrape_config(prometheus_config, inspector.removeprefix("http://"))
    config_file.write_text(yaml.safe_dump(rewrite_rule_files(config, work)))
    port = free_port()
    argv = [binary, f"--config.file={config_file}", f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running("prometheus", argv, dict(os.environ), work / "prometheus.log", f"{url}/-/ready"):
        yield url


def rewrite_scrape_config(config: dict[str, Any], target: str) -> dict[str, Any]:
    """The deployed config with compose's DNS discovery replaced by ``target`` and a 1 s scrape interval."""
    (job,) = config["scrape_configs"]
    (dns,) = job["dns_sd_configs"]
    assert (dns["names"], dns["port"]) == (["inspector"], 8000), "the deployed discovery changed: update this test"
    new_job = {k: v for k, v in job.items() if k != "dns_sd_configs"} | {"static_configs": [{"targets": [target]}]}
    new_global = {**config["global"], "scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL}
    return {**config, "global": new_global, "scrape_configs": [new_job]}


def rewrite_rule_files(config: dict[str, Any], work: Path) -> dict[str, Any]:
    """The config with its rule files copied into ``work`` without ``for:``, evaluated every second."""
    files = []
    for name in config["rule_files"]:
        rules = yaml.safe_load((PROMETHEUS_DIR / name).read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule.pop("for", None)
        target = work / Path(name).name
        target.write_text(yaml.safe_dump(rules))
        files.append(str(target))
    return {**config, "rule_files": files, "global": {**config["global"], "evaluation_interval": SCRAPE_INTERVAL}}


# --- traffic -----------------------------------------------------------------------------


def _png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG")
    return buf.getvalue()


def send_one_round(client: httpx.Client, url: str, rng: np.random.Generator, model: str) -> list[int]:
    """One request of each kind a line sends, plus two it should refuse, then one through the v2 protocol (to the
    served ``model``); returns the statuses."""
    frame = rng.integers(0, 256, size=(200, 200), dtype=np.uint8)  # NEU images are 200 x 200 gray
    png = _png(frame)
    v2 = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(png).decode()]}]}
    return [
        client.post(f"{url}/classify", files={"file": ("strip.png", png, "image/png")}).status_code,
        client.post(f"{url}/classify", content=png, headers={"Content-Type": "image/png"}).status_code,
        client.post(
            f"{url}/classify",
            params={"width": 200, "height": 200},
            content=frame.tobytes(),
            headers={"Content-Type": "application/octet-stream"},
        ).status_code,  # fmt: skip
        client.post(f"{url}/classify", content=b"not an image", headers={"Content-Type": "image/png"}).status_code,
        client.post(f"{url}/classify", content=b"{}", headers={"Content-Type": "application/json"}).status_code,
        client.post(f"{url}/v2/models/{model}/infer", json=v2).status_code,
    ]


class Traffic(threading.Thread):
    """Rounds of requests until stopped, so rates and quantiles have something in every window."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop_event, self.statuses, self.error = url, threading.Event(), [], None

    def run(self) -> None:
        rng = np.random.default_rng(0)
        try:
            with httpx.Client(timeout=30) as client:
                model = client.get(f"{self.url}/model").raise_for_status().json()["name"]
                while not self.stop_event.is_set():
                    self.statuses.append(send_one_round(client, self.url, rng, model))
                    self.stop_event.wait(0.2)
        except Exception as exc:  # reported by the test, not lost in the thread
            self.error = exc


# --- the dashboard's queries -------------------------------------------------------------


def grafana_variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each dashboard variable's value for the check: All for multi-value queries, else the default."""
    values = dict(GRAFANA_BUILTINS)
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query" and var.get("includeAll"):
            values[var["name"]] = var["allValue"]
        elif var["type"] == "custom":
            values[var["name"]] = var["current"]["value"]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's ``$name`` and ``${name}`` interpolation; an unknown variable fails the test."""
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)
    assert "$" not in out, f"unsubstituted variable left in {out}"
    return out


def instant_query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"Prometheus refused {expr!r}: {body}"
    return body["data"]["result"]


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one series with a finite value (a quantile of no observations is NaN: no data)."""
    return any(math.isfinite(float(series["value"][1])) for series in result)


def test_container_command_serves_with_the_container_environment(inspector, runtime_stage, tiny_checkpoint):
    """The image's CMD and env answered /readyz (the fixture waited for it); the HEALTHCHECK probe passes."""
    assert httpx.get(f"{inspector}/healthz", timeout=10).status_code == 200
    served = httpx.get(f"{inspector}/model", timeout=10).json()
    card = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    assert served["weights_sha256"] == card["weights_sha256"], "the service did not load the ILCS_CHECKPOINT given"
    health = next(i.args for i in runtime_stage if i.keyword == "HEALTHCHECK")
    probe = json.loads(health[health.index("CMD") + 3 :].strip())
    assert probe[0] == "python"
    port = inspector.rsplit(":", 1)[1]
    code = probe[-1]
    env = {**os.environ, "ILCS_PORT": port}  # the probe reads the port setting, as the service does
    result = subprocess.run([sys.executable, *probe[1:-1], code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    broken = code.replace("/healthz", "/no-such-route")

    def probe_fails(source: str, environment: dict[str, str]) -> bool:
        run = subprocess.run([sys.executable, *probe[1:-1], source], capture_output=True, timeout=60, env=environment)
        return run.returncode != 0

    assert probe_fails(broken, env)
    assert probe_fails(code, {**env, "ILCS_PORT": "1"})  # nothing listens there


def last_scrape_time(prometheus: str, metric: str) -> float:
    """The timestamp of ``metric``'s latest sample: a query evaluated there extrapolates nothing past it."""
    (series, *_) = instant_query(prometheus, f"max(timestamp({metric}))")
    return float(series["value"][1])


def query_at(prometheus: str, expr: str, at: float) -> dict[str, float]:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr, "time": at}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"Prometheus refused {expr!r}: {body}"
    return {s["metric"].get("label", ""): float(s["value"][1]) for s in body["data"]["result"]}


def test_shift_counts_count_every_image_and_show_unseen_classes_as_zero(inspector, prometheus, dashboard, panels):
    """Every class's counter is scraped at 0 before its first image, so increase() misses none of them."""
    before = httpx.get(f"{inspector}/metrics", timeout=10).text
    assert "ilcs_predictions_total{" in before, "the service exports no per-class series before any image"
    assert all(float(v) == 0 for v in re.findall(r"^ilcs_predictions_total\{[^}]*\} (\S+)$", before, re.M)), (
        "this test needs a fresh inspector: another test of this module classified images before it"
    )
    card_labels = httpx.get(f"{inspector}/model", timeout=10).json()["labels"]

    def scraped_at_zero() -> bool:
        zeros = query_at(prometheus, "ilcs_predictions_total", time.time())
        return sorted(zeros) == sorted(card_labels) and set(zeros.values()) == {0.0}

    wait_until("every class's counter scraped at 0", scraped_at_zero, DATA_DEADLINE_S, lambda: None)

    answered: dict[str, int] = dict.fromkeys(card_labels, 0)
    with httpx.Client(timeout=60) as client:
        for sample in SAMPLES * 2:
            r = client.post(f"{inspector}/classify", params={"heatmap": "none"},
                            files={"file": (sample.name, sample.read_bytes(), "image/png")})  # fmt: skip
            assert r.status_code == 200, r.text
            answered[r.json()["label"]] += 1
    total = sum(answered.values())

    def scraped_all() -> bool:
        return query_at(prometheus, "sum(ilcs_predictions_total)", time.time()).get("") == total

    wait_until(f"Prometheus to scrape all {total} answers", scraped_all, DATA_DEADLINE_S, lambda: None)
    at = last_scrape_time(prometheus, "ilcs_predictions_total")

    values = {**grafana_variables(dashboard), "shift": "8h"}
    (per_class,) = (t["expr"] for p in panels if p["title"] == "Images per class over the last $shift"
                    for t in p["targets"])  # fmt: skip
    (images,) = (t["expr"] for p in panels if p["title"] == "Images over the last $shift"
                 for t in p["targets"] if "ilcs_predictions_total" in t["expr"])  # fmt: skip
    counted = query_at(prometheus, substitute(per_class, values), at)
    assert counted == {label: float(n) for label, n in answered.items()}, f"answered {answered}, counted {counted}"
    assert query_at(prometheus, substitute(images, values), at) == {"": float(total)}


def test_prometheus_scrapes_the_service_and_every_dashboard_query_has_data(
    inspector, prometheus, dashboard, dashboard_queries
):
    traffic = Traffic(inspector)
    traffic.start()
    try:
        # The scrape target is up.
        def target_up() -> bool:
            active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            return [t["health"] for t in active] == ["up"]

        wait_until("the inspector target to be up", target_up, DATA_DEADLINE_S, lambda: None)
        up = instant_query(prometheus, 'up{job="ilcs-inspector"}')
        assert [float(s["value"][1]) for s in up] == [1.0]

        # Every dashboard query returns data, once traffic has reached a few scrapes.
        values = grafana_variables(dashboard)
        queries = {(q.panel, q.ref): substitute(q.expr, values) for q in dashboard_queries}

        def missing() -> dict[tuple[str, str], str]:
            if traffic.error:
                raise traffic.error
            return {k: e for k, e in queries.items() if not has_data(instant_query(prometheus, e))}

        last: dict[tuple[str, str], str] = {}

        def all_have_data() -> bool:
            nonlocal last
            last = missing()
            return not last

        end = time.monotonic() + DATA_DEADLINE_S
        while not all_have_data() and time.monotonic() < end:
            time.sleep(1)
        assert not last, f"dashboard queries without data after {DATA_DEADLINE_S} s: {last}"

        # The template variable's own query (label_values) finds the inspector too.
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                metric = re.match(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
                found = httpx.get(f"{prometheus}/api/v1/label/{metric[2]}/values",
                                  params={"match[]": metric[1]}, timeout=10).json()["data"]  # fmt: skip
                assert found == [inspector.removeprefix("http://")], var["name"]
    finally:
        traffic.stop_event.set()
        traffic.join(timeout=60)

    # The three ways of sending an image and the v2 request were answered 200; the two bad requests were refused as
    # the caller's fault.
    assert traffic.statuses, "no request round completed"
    for statuses in traffic.statuses:
        assert statuses[:3] == [200, 200, 200] and 400 <= statuses[3] < 500 and 400 <= statuses[4] < 500, statuses
        assert statuses[5] == 200, statuses
    import torch

    (info,) = instant_query(prometheus, "ilcs_model_info")
    assert info["metric"]["device"].startswith("cuda" if torch.cuda.is_available() else "cpu"), info["metric"]

    # The alert rules ran: the untrained model's answers are mostly low-confidence, and that alert fired.
    low = instant_query(prometheus, "sum(ilcs_low_confidence_total) / sum(ilcs_predictions_total)")
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
    assert float(low[0]["value"][1]) > 0.2 and "ILCSLowConfidence" in firing, (low, firing)
    assert "ILCSInspectorDown" not in firing
