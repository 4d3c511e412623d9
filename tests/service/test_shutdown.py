"""Graceful shutdown of the real ``ilcs serve`` process, and where it binds.

A burst of slow requests (large images, coloured heatmaps) is sent; once the first
answer is back, the process gets SIGTERM. From then on it must refuse new work
with 503 + Retry-After (and say so on /readyz) while its port stays open, answer
every request it had accepted with a 200, and exit 0 once it has.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.service.conftest import encode, wait_until

BURST = 24


@pytest.fixture(scope="module")
def process(tiny_checkpoint, tmp_path_factory):
    """``ilcs serve`` configured by ILCS_* alone (no --host/--port) on a free loopback port (SIGTERM ends it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "ILCS_CHECKPOINT": str(tiny_checkpoint),
        "ILCS_HOST": "127.0.0.1",
        "ILCS_PORT": str(port),
        "ILCS_MODEL_WORKERS": "1",
        "ILCS_THREADS": "1",
        "ILCS_MAX_BATCH_SIZE": "2",
        "ILCS_DRAIN_S": "1",
        "ILCS_REQUEST_TIMEOUT_S": "120",  # a busy CI machine must not turn this into a deadline test
        "ILCS_LOG_LEVEL": "info",
    }
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ilcs_cli", "serve"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, "ilcs serve to turn ready")
        yield proc, url, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_it_binds_where_its_settings_say(process):
    proc, url, port, _ = process
    with socket.create_connection(("127.0.0.1", port)):
        pass
    listening = _listening_ports(proc.pid)
    assert listening == {("127.0.0.1", port)}


def test_sigterm_stops_admitting_finishes_every_accepted_request_then_exits(process):
    proc, url, _, log = process
    rng = np.random.default_rng(3)
    slow = encode(rng.integers(0, 256, (300, 300), dtype=np.uint8))  # a few ms of model, more of heatmap
    finished: list[float] = []

    def one(i: int) -> httpx.Response:
        response = httpx.post(
            f"{url}/classify", content=slow, headers={"content-type": "image/png"},
            params={"heatmap": "overlay"}, timeout=120,
        )  # fmt: skip
        finished.append(time.monotonic())
        return response

    with ThreadPoolExecutor(BURST) as pool:
        burst = [pool.submit(one, i) for i in range(BURST)]
        wait_until(lambda: len(finished) > 0, "the first answer of the burst")
        signalled = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 503, "/readyz to say it is stopping")
        refused = httpx.post(f"{url}/classify", content=slow, headers={"content-type": "image/png"})
        responses = [f.result() for f in burst]
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
    assert "shutting down" in refused.json()["detail"]
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    for r in responses:
        if r.status_code == 503:
            assert "shutting down" in r.json()["detail"] and r.headers["retry-after"]
    after_signal = sum(t > signalled for t in finished)
    accepted_then_finished = sum(s == 200 for s in statuses) - (BURST - after_signal)
    assert accepted_then_finished > 0, "some accepted requests were still running at SIGTERM and were finished"
    assert proc.wait(60) == 0
    text = log.read_text()
    assert "SIGTERM: draining" in text and "drained in" in text and "Traceback" not in text


def _listening_ports(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets ``pid`` listens on (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed since listdir (the process keeps running)
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            address, port = fields[1].split(":")
            ip = socket.inet_ntoa(bytes.fromhex(address)[::-1])
            found.add((ip, int(port, 16)))
    return found
