"""The load generators of ``benchmarks.reliability``: open-loop overload, the soak and the retry storm.

Open loop means requests start on schedule whatever the answers, as traffic from
many independent clients does; closed loop (``benchmarks.loopback.run_level``)
means each client waits for its answer, which measures saturation.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.loopback import Service, read_response, run_level

__all__ = ["Outcome", "Overload", "Soak", "overload", "saturation", "soak"]


def saturation(svc: Service, payload: bytes, clients: int, requests: int) -> float:
    """Answered requests per second with ``clients`` closed-loop clients."""
    return run_level(svc, [payload], clients, requests).throughput


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no answer within the client's timeout, or the connection failed
    latency_s: float
    retry_after: str | None
    sent_at: float = 0.0  # time.perf_counter() when the request was started


@dataclass
class Overload:
    rate: float  # requests per second asked for
    sent_per_s: float  # requests per second the client managed to start
    seconds: float
    outcomes: list[Outcome]
    queue_depths: list[float] = field(default_factory=list)
    in_flight: list[float] = field(default_factory=list)

    def count(self, status: int | None) -> int:
        return sum(o.status == status for o in self.outcomes)

    def answered_per_s(self, status: int = 200) -> float:
        """Answers with ``status`` per second, from the first request sent to the last such answer."""
        done = [o for o in self.outcomes if o.status == status]
        if not done:
            return 0.0
        return len(done) / (max(o.sent_at + o.latency_s for o in done) - min(o.sent_at for o in self.outcomes))

    def latencies_ms(self, status: int = 200) -> np.ndarray:
        return np.array([o.latency_s * 1e3 for o in self.outcomes if o.status == status])

    @property
    def unexpected(self) -> list[Outcome]:
        """Anything but a 200, or a 503 with Retry-After."""
        return [o for o in self.outcomes if not (o.status == 200 or (o.status == 503 and o.retry_after))]


async def _exchange(host: str, port: int, payload: bytes, timeout: float) -> Outcome:
    start = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            status, headers = await read_response(reader)
        retry = headers.get(b"retry-after")
        return Outcome(status, time.perf_counter() - start, retry.decode() if retry else None, start)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        return Outcome(None, time.perf_counter() - start, None, start)
    finally:
        if writer is not None:
            writer.close()


def overload(svc: Service, payload: bytes, rate: float, seconds: float, timeout: float) -> Overload:
    """Start ``rate`` requests per second for ``seconds``, each on its own connection; sample /metrics."""
    queue_depths: list[float] = []
    in_flight: list[float] = []

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            values = await asyncio.to_thread(svc.metrics)
            queue_depths.append(values.get("ilcs_queue_depth", 0.0))
            in_flight.append(values.get("ilcs_requests_in_flight", 0.0))
            await asyncio.sleep(0.05)

    async def run() -> tuple[list[Outcome], float]:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(stop))
        tasks = []
        start = time.perf_counter()
        for i in itertools.count():
            due = start + i / rate
            if due - start >= seconds:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(_exchange(svc.host, svc.port, payload, timeout)))
        sending = time.perf_counter() - start
        outcomes = await asyncio.gather(*tasks)
        stop.set()
        await sampler
        return list(outcomes), sending

    outcomes, sending = asyncio.run(run())
    return Overload(rate, len(outcomes) / sending, seconds, outcomes, queue_depths, in_flight)


@dataclass
class Soak:
    requests: int
    errors: int
    seconds: float
    rss_mb: list[float]  # resident memory of the server, sampled every ``every`` requests
    open_fds: list[float]

    @property
    def rss_growth_mb(self) -> float:
        """Last sample minus the first one after warm-up (the first ``every`` requests)."""
        return self.rss_mb[-1] - self.rss_mb[0]

    @property
    def fd_growth(self) -> float:
        return self.open_fds[-1] - self.open_fds[0]


def soak(svc: Service, payloads: list[bytes], requests: int, clients: int = 8, every: int = 1000) -> Soak:
    """``requests`` requests by closed-loop clients, in rounds of ``every``; memory and fds after each round."""
    rss: list[float] = []
    fds: list[float] = []
    errors = 0
    start = time.perf_counter()
    for done in range(0, requests, every):
        level = run_level(svc, payloads, clients, min(every, requests - done))
        errors += level.errors
        values = svc.metrics()
        rss.append(values["process_resident_memory_bytes"] / 2**20)
        fds.append(values["process_open_fds"])
        print(f"soak: {done + every} requests, rss {rss[-1]:.1f} MB, {fds[-1]:.0f} fds", flush=True)
    return Soak(requests, errors, time.perf_counter() - start, rss, fds)
