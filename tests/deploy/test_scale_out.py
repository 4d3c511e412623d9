"""Replicas behind the real load balancer, without Docker: ``docker compose up --scale inspector=3`` on loopback.

Three ``ilcs serve`` replicas start as the image's CMD does, with the container's environment
(only host, port and checkpoint changed, and no start-up calibration), and Debian's nginx runs in
front of them with deploy/nginx as docker-compose.yml mounts it (``benchmarks.balancer``). Clients
send ``POST /classify`` through nginx the whole time, while:

1. one replica gets SIGTERM, as ``docker compose stop`` or a scale-down sends: it drains (503 for
   ILCS_DRAIN_S, then finishes what it accepted) and exits 0; nginx sends its refusals and then its
   refused connections on to the others;
2. another is killed (SIGKILL, a crash) with requests in flight: nginx resends those POSTs
   (``non_idempotent``: /classify is a pure function of its body).

Every request sent is answered 200, once; the last replica took the load. Skips without nginx.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.balancer import Balancer, find_nginx
from tests.deploy.conftest import INSTALL
from tests.deploy.test_prometheus_e2e import STARTUP_DEADLINE_S, Process, _png, wait_until

CLIENTS = 4


@pytest.fixture
def nginx() -> str:
    binary = find_nginx()
    if binary is None:
        pytest.skip(f"nginx is not installed: {INSTALL['nginx']}")
    return binary


@pytest.fixture
def replicas(nginx, free_port, dockerfile_cmd, inspector_env, tiny_checkpoint, tmp_path) -> Iterator[list[Process]]:
    """Three replicas as the container runs them, each ready; stopped at the end."""
    ilcs = shutil.which(dockerfile_cmd[0], path=str(Path(sys.executable).parent)) or shutil.which(dockerfile_cmd[0])
    assert ilcs, "install the project (pip install -e .)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ILCS_")}
    base.update(inspector_env, ILCS_HOST="127.0.0.1", ILCS_CHECKPOINT=str(tiny_checkpoint), ILCS_THREADS="1")
    # No start-up calibration (what is tested here is the balancer), and requests that stay a while in the
    # replica (a 50 ms batching window), so that the one killed has some in flight.
    base.update(ILCS_CALIBRATE="false", ILCS_MAX_DELAY_MS="50")
    procs = []
    try:
        for i in range(3):
            port = free_port()
            env = {**base, "ILCS_PORT": str(port)}
            proc = Process(f"replica {i}", [ilcs, *dockerfile_cmd[1:]], env, tmp_path / f"replica{i}" / "log")
            proc.address = f"127.0.0.1:{port}"
            procs.append(proc)
        for proc in procs:

            def ready(p: Process = proc) -> bool:
                return httpx.get(f"http://{p.address}/readyz", timeout=5).status_code == 200

            wait_until(f"{proc.name} ready", ready, STARTUP_DEADLINE_S, proc.died)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


class Load(threading.Thread):
    """One client sending ``POST /classify`` through the balancer until stopped, recording every answer."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.stop_event = url, body, threading.Event()
        self.answers: list[tuple[float, int, str]] = []  # (time, status, X-Upstream: the replicas tried, in order)
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                while not self.stop_event.is_set():
                    r = client.post(f"{self.url}/classify", params={"heatmap": "none"}, content=self.body,
                                    headers={"Content-Type": "image/png"})  # fmt: skip
                    self.answers.append((time.monotonic(), r.status_code, r.headers.get("x-upstream", "")))
        except Exception as exc:  # a lost request: reported by the test
            self.error = exc


def _answered_by(loads: list[Load], since: float = 0.0) -> dict[str, int]:
    """How many 200s each replica gave (the last address of X-Upstream answered)."""
    counts: dict[str, int] = {}
    for load in loads:
        for t, status, upstream in load.answers:
            if t >= since and status == 200:
                last = upstream.split(", ")[-1]
                counts[last] = counts.get(last, 0) + 1
    return counts


def test_replicas_stopped_mid_load_lose_no_request(nginx, replicas, free_port, tmp_path):
    first, second, last = replicas
    body = _png(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8))
    with Balancer(nginx, tmp_path / "nginx", free_port(), [p.address for p in replicas]) as balancer:
        loads = [Load(balancer.url, body) for _ in range(CLIENTS)]
        for load in loads:
            load.start()
        try:

            def everyone_answered() -> bool:
                return all(_answered_by(loads).get(p.address, 0) >= 3 for p in replicas)

            wait_until("each replica to answer through nginx", everyone_answered, 120, lambda: None)

            # 1. A graceful stop: the replica drains and exits 0, the others answer.
            first.proc.send_signal(signal.SIGTERM)
            first.proc.wait(timeout=60)
            assert first.proc.returncode == 0, first.tail()
            assert "drained in" in first.tail()
            stopped = time.monotonic()

            def both_answered_since(t: float) -> bool:
                counts = _answered_by(loads, t)
                return counts.get(second.address, 0) >= 3 and counts.get(last.address, 0) >= 3

            wait_until("the two others to take the load", lambda: both_answered_since(stopped), 120, lambda: None)

            # 2. A crash with requests in flight: nginx resends them to the last replica.
            second.proc.kill()
            second.proc.wait(timeout=30)
            killed = time.monotonic()
            wait_until("the last replica to take the load",
                       lambda: _answered_by(loads, killed).get(last.address, 0) >= 10, 120, lambda: None)  # fmt: skip
        finally:
            for load in loads:
                load.stop_event.set()
            for load in loads:
                load.join(timeout=60)
        access_log = (balancer.work / "access.log").read_text()
        error_log = balancer.error_log()

    errors = [load.error for load in loads if load.error]
    assert not errors, f"requests failed through the balancer: {errors}"
    answers = [a for load in loads for a in load.answers]
    statuses = {status for _, status, _ in answers}
    assert statuses == {200}, f"answers other than 200: {sorted(statuses)}; nginx's log:\n{access_log[-3000:]}"
    # Requests refused by the draining (503) or stopped (connection refused) replica were sent on: proof that
    # the retries, and not luck, kept every answer 200.
    resent_from_first = [u for _, _, u in answers if u.startswith(first.address + ", ")]
    assert resent_from_first, "no request was sent on from the stopping replica; nginx's log:\n" + access_log[-3000:]
    # The crash broke requests in flight on the killed replica (not merely refused new connections, which nginx
    # resends even without non_idempotent), and they were answered 200 all the same: resent.
    broken = [line for line in error_log.splitlines()
              if "while reading response header from upstream" in line and second.address in line]  # fmt: skip
    assert broken, f"no request was in flight on the killed replica; nginx's error log:\n{error_log[-3000:]}"
    after_kill = _answered_by(loads, killed)
    assert set(after_kill) == {last.address}, f"answered after the kill: {after_kill}"
