"""``ilcs serve`` as a person starts it, in a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STARTUP_DEADLINE_S = 600  # import torch, load, freeze the graph, warm up: slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ilcs_serve(log: Path, **settings: str) -> Iterator[str]:
    """Run ``ilcs serve`` from the repository root with ``ILCS_<NAME>=value`` for each setting given
    (no other ILCS_* variable of the caller's environment); yield its base URL once /readyz says ready."""
    port = free_port()
    ilcs = shutil.which("ilcs", path=str(Path(sys.executable).parent))
    assert ilcs, "install the project first (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILCS_")}
    env.update({f"ILCS_{k.upper()}": v for k, v in settings.items()}, ILCS_HOST="127.0.0.1", ILCS_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([ilcs, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            end = time.monotonic() + STARTUP_DEADLINE_S
            while True:
                assert proc.poll() is None, f"ilcs serve exited {proc.returncode}:\n{log.read_text()[-3000:]}"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                assert time.monotonic() < end, f"not ready in {STARTUP_DEADLINE_S} s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()  # a graceful drain; a machine too busy to finish it gets SIGKILL
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
