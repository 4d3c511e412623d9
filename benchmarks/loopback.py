"""``ilcs serve`` in a subprocess on loopback, and the closed-loop client that drives it.

The client speaks HTTP/1.1 over asyncio streams rather than through an HTTP library, so
the load generator takes as little as possible of the cores it shares with the service.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.config import default_neu_root

__all__ = [
    "Level",
    "Service",
    "closed_loop",
    "load_images",
    "read_response",
    "request_bytes",
    "request_payloads",
    "run_level",
]

_HEADER = re.compile(rb"(?im)^([a-z-]+): *([^\r\n]*)\r$")


class Service:
    """``ilcs serve`` in a subprocess on a free loopback port, ready when entered."""

    def __init__(self, batch: int, delay_ms: float, queue_size: int, cwd: Path | None = None, **env: str) -> None:
        self.cwd = cwd  # the source tree to serve from (benchmarks.ab), else this installation
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = "127.0.0.1"
        self.env = {
            **os.environ,
            "ILCS_MAX_BATCH_SIZE": str(batch),
            "ILCS_MAX_DELAY_MS": str(delay_ms),
            "ILCS_QUEUE_SIZE": str(queue_size),
            "ILCS_LOG_LEVEL": "warning",
            **env,
        }

    def __enter__(self) -> Service:
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ilcs-serve-", suffix=".log")  # noqa: SIM115
        cmd = [sys.executable, "-m", "ilcs_cli", "serve", "--host", self.host, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                log = self.log.read()[-3000:]
                msg = f"the service did not turn ready within 300 s (is the CPU busy?); its log:\n{log}"
                self.__exit__()
                raise RuntimeError(msg)
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """Every sample of the service's ``/metrics`` without labels (name -> value)."""
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return {m[0]: float(m[1]) for m in re.findall(r"^([a-z_]+) (\S+)$", text, re.MULTILINE)}

    def cpu_seconds(self, thread: bool = False) -> float:
        """User + system CPU seconds of the server so far, or of its main thread (the event loop's)."""
        pid = self.proc.pid
        stat = Path(f"/proc/{pid}/task/{pid}/stat" if thread else f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_images(count_per_class: int = 10) -> list[bytes]:
    """NEU JPEGs (the first ``count_per_class`` of each class), or synthetic 200 x 200 JPEGs without the data."""
    files = sorted((default_neu_root() / "images").glob("*.jpg"))
    if files:
        by_class: dict[str, list[Path]] = {}
        for f in files:
            by_class.setdefault(f.name.rsplit("_", 1)[0], []).append(f)
        return [f.read_bytes() for group in by_class.values() for f in group[:count_per_class]]
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(6 * count_per_class):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (200, 200), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def request_payloads(images: list[bytes]) -> list[bytes]:
    """One ``POST /classify`` of each JPEG, on the wire."""
    return [request_bytes(img, "image/jpeg") for img in images]


def request_bytes(image: bytes, media: str = "image/png", query: str = "", close: bool = False) -> bytes:
    """One ``POST /classify`` on the wire."""
    head = (
        f"POST /classify{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\n"
        f"Content-Length: {len(image)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + image


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """Read one response off ``reader``: its status and its headers (lower-case names); the body is discarded."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {k.lower(): v for k, v in _HEADER.findall(head)}
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(head[9:12]), headers


@dataclass
class Level:
    """What ``clients`` closed-loop clients got from ``requests`` requests, and what it cost."""

    clients: int
    requests: int
    errors: int  # requests not answered 200
    seconds: float
    latencies: np.ndarray  # seconds, one per request answered 200
    mean_batch: float
    server_cpu_s: float
    client_cpu_s: float
    loop_cpu_s: float = 0.0  # the server's event-loop thread (HTTP, routing, futures, JSON)
    model_images: float = 0.0  # images the model ran on (ilcs_batch_size_sum)
    statuses: Counter = field(default_factory=Counter)  # status -> requests (None: the connection failed)

    @property
    def throughput(self) -> float:
        """Requests answered 200 per second (the goodput)."""
        return (self.requests - self.errors) / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1e3)


def closed_loop(
    host: str, port: int, payloads: list[bytes], clients: int, requests: int | None = None, seconds: float | None = None
) -> tuple[float, list[float], Counter]:
    """``clients`` closed-loop clients, each on one connection, until ``requests`` requests in all or ``seconds``.

    Each client sends its next request the moment it has an answer, whatever its status (a 503's
    ``Retry-After`` is not honoured), and reconnects when the server closes the connection. Returns the
    wall seconds, the latency of every 200 answer, and the count of each status (``None``: a failed connection).
    """
    latencies: list[float] = []
    statuses: Counter = Counter()
    counter = itertools.count()
    limit = requests if requests is not None else float("inf")

    async def client(stop: float) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port)
            while time.perf_counter() < stop and (i := next(counter)) < limit:
                start = time.perf_counter()
                writer.write(payloads[i % len(payloads)])
                status, headers = await read_response(reader)
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                if headers.get(b"connection", b"").lower() == b"close":
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            statuses[None] += 1
        finally:
            if writer is not None:
                writer.close()

    async def everyone() -> float:
        start = time.perf_counter()
        stop = start + seconds if seconds is not None else float("inf")
        await asyncio.gather(*(client(stop) for _ in range(clients)))
        return time.perf_counter() - start

    return asyncio.run(everyone()), latencies, statuses


def run_level(
    svc: Service, payloads: list[bytes], clients: int, requests: int | None = None, seconds: float | None = None
) -> Level:
    """``closed_loop`` against ``svc``, with what it cost the server (CPU, batches) from its ``/metrics``."""
    before = svc.metrics()
    server0, loop0, client0 = svc.cpu_seconds(), svc.cpu_seconds(thread=True), time.process_time()
    elapsed, latencies, statuses = closed_loop(svc.host, svc.port, payloads, clients, requests, seconds)
    client_cpu, server_cpu = time.process_time() - client0, svc.cpu_seconds() - server0
    loop_cpu = svc.cpu_seconds(thread=True) - loop0
    after = svc.metrics()
    images = after["ilcs_batch_size_sum"] - before["ilcs_batch_size_sum"]
    mean_batch = images / max(after["ilcs_batch_size_count"] - before["ilcs_batch_size_count"], 1)
    done = sum(statuses.values())
    return Level(clients, done, done - statuses[200], elapsed, np.array(latencies), mean_batch, server_cpu,
                 client_cpu, loop_cpu, images, statuses)  # fmt: skip
