"""Admission control: a busy service refuses what it could not answer within its bound (a third of the deadline)."""

from __future__ import annotations

import pytest

from service.admission import Admission
from service.errors import QueueFull


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr("service.admission.time.perf_counter", lambda: now[0])
    return now


def busy(admission: Admission, clock: list[float], requests: int, answers: int, gap: float) -> list:
    """Admit ``requests`` at once, then answer ``answers`` of them ``gap`` seconds apart; the rest stay in flight."""
    held = [admission.admit() for _ in range(requests)]
    for h in held:
        h.__enter__()
    for h in held[:answers]:
        clock[0] += gap
        h.__exit__(None, None, None)
    return held[answers:]


def test_an_unmeasured_or_idle_service_admits_everything(clock):
    admission = Admission(max_wait_s=0.001, min_answers=8)
    rest = busy(admission, clock, 20, 7, gap=1.0)  # 7 answers: not measured yet
    assert admission.interval_s is None and admission.expected_wait_s() is None
    with admission.admit():
        assert admission.in_flight == 14
    for h in rest:
        h.__exit__(None, None, None)
    assert admission.in_flight == 0


def test_a_busy_service_refuses_what_would_wait_longer_than_max_wait(clock):
    admission = Admission(max_wait_s=1.0, window=8, min_answers=8)
    rest = busy(admission, clock, 20, 8, gap=0.25)  # 4 answers a second while 12 stay in flight
    assert admission.interval_s == pytest.approx(0.25)
    assert admission.expected_wait_s() == pytest.approx(13 * 0.25)
    with pytest.raises(QueueFull, match="the service is behind"):
        admission.admit().__enter__()
    assert admission.in_flight == 12, "a refused request is not counted"
    for h in rest[:9]:
        clock[0] += 0.25
        h.__exit__(None, None, None)
    with admission.admit():  # 3 in flight: (3 + 1) x 0.25 s = 1 s, admitted
        assert admission.in_flight == 4
    for h in rest[9:]:
        h.__exit__(None, None, None)


def test_answers_in_bursts_measure_their_mean_interval_and_idle_time_does_not_count(clock):
    admission = Admission(max_wait_s=10.0, window=32, min_answers=8)
    held = busy(admission, clock, 40, 0, gap=0.0)
    for burst in range(10):  # a batch of 4 answered together, every 0.4 s: 0.1 s per answer on average
        clock[0] += 0.4
        for h in held[4 * burst : 4 * burst + 4]:
            h.__exit__(None, None, None)
        if burst == 3:
            assert admission.interval_s == pytest.approx(1.2 / 15)  # 16 answers over 1.2 s
    assert admission.in_flight == 0
    measured = admission.interval_s
    assert measured == pytest.approx(0.4 * 7 / 31)  # the last 32 answers: 8 bursts over 2.8 s
    clock[0] += 3600  # idle for an hour
    assert busy(admission, clock, 2, 1, gap=0.0) and admission.interval_s == measured


def test_refusals_and_failures_inside_the_block_do_not_count_as_answers(clock):
    admission = Admission(max_wait_s=100.0, window=8, min_answers=2)
    rest = busy(admission, clock, 10, 2, gap=0.5)  # 2 answers per second measured
    assert admission.interval_s == pytest.approx(0.5)
    for _ in range(20):  # quick failures (a 504, a bad image...) while the service stays slow
        clock[0] += 0.001
        with pytest.raises(RuntimeError), admission.admit():
            raise RuntimeError("timed out")
    assert admission.interval_s == pytest.approx(0.5), "failures say nothing of the speed"
    admission.max_wait_s = 1.0
    with pytest.raises(QueueFull):
        admission.admit().__enter__()  # 8 in flight x 0.5 s
    for h in rest:
        h.__exit__(None, None, None)
