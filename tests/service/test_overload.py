"""Twice the measured saturation throughput on 127.0.0.1: only 200s and 503s with Retry-After.

The real ``ilcs serve`` (tiny model, one model worker, a queue of 32, a 5 s
deadline) is first driven by closed-loop clients to measure its saturation
throughput, then sent requests open-loop at twice that rate, each on its own
connection. Every request must get an answer: a 200 within the deadline, or a 503
with ``Retry-After``; the queue never holds more than its 32 places. (The figures
for the shipped model are in reports/reliability.md, ``python -m benchmarks.reliability``.)
"""

from __future__ import annotations

import numpy as np

from benchmarks.loopback import Service, request_bytes
from benchmarks.reliability_load import overload, saturation
from tests.service.conftest import encode

QUEUE, DEADLINE_S = 32, 5.0


def test_twice_the_saturation_throughput_gets_only_200_or_503_within_the_bounds(tiny_checkpoint):
    image = encode(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8))
    env = {
        "ILCS_CHECKPOINT": str(tiny_checkpoint),
        "ILCS_MODEL_WORKERS": "1",
        "ILCS_THREADS": "1",
        "ILCS_REQUEST_TIMEOUT_S": str(DEADLINE_S),
    }
    with Service(4, 2.0, QUEUE, **env) as svc:
        saturated = saturation(svc, request_bytes(image), clients=8, requests=160)
        result = overload(svc, request_bytes(image, close=True), 2 * saturated, seconds=3.0, timeout=DEADLINE_S + 5)
    assert result.sent_per_s > 1.5 * saturated, "the client could not send an overload"
    assert result.count(503) > 0, "an overload is refused in part"
    assert result.unexpected == [], [o.status for o in result.unexpected]
    assert max(result.queue_depths) <= QUEUE
    assert result.latencies_ms(200).max() <= DEADLINE_S * 1e3
