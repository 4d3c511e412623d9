"""Admission control: a busy service refuses what its model threads could not answer within the bound.

The bound is a third of the deadline in the service; here each test sets its own. The speed is
learnt only from the model threads' batches (``observe``), so nothing a client does with its
connection, and no idle time, can teach it a speed the model does not have.
"""

from __future__ import annotations

import pytest

from service.admission import PIXELS_PER_UNIT, Admission, image_units
from service.errors import QueueFull


def hold(admission: Admission, requests: int, units: float = 1.0) -> list:
    """Admit ``requests`` of ``units`` each and keep them in flight."""
    held = [admission.admit(units) for _ in range(requests)]
    for h in held:
        h.__enter__()
    return held


def release(held: list) -> None:
    for h in held:
        h.__exit__(None, None, None)


def test_an_unmeasured_or_idle_service_admits_everything():
    admission = Admission(max_wait_s=0.001)
    rest = hold(admission, 20)
    assert admission.unit_s is None and admission.expected_wait_s() is None
    with admission.admit():
        assert admission.in_flight == 21
    release(rest)
    assert admission.in_flight == 0 and admission.outstanding == 0
    admission.observe(units=1, seconds=100.0)  # a model that takes 100 s an image...
    with admission.admit():  # ...still gets a request when nothing else is outstanding
        assert admission.in_flight == 1


def test_a_busy_service_refuses_what_would_wait_longer_than_max_wait():
    admission = Admission(max_wait_s=100.0, workers=2)
    admission.observe(units=4, seconds=1.0)  # 0.25 s an image on each of two model threads
    assert admission.unit_s == pytest.approx(0.25)
    rest = hold(admission, 12)
    admission.max_wait_s = 1.0
    assert admission.expected_wait_s() == pytest.approx(13 * 0.25 / 2)
    with pytest.raises(QueueFull, match="the service is behind"):
        admission.admit().__enter__()
    assert admission.in_flight == 12, "a refused request is not counted"
    release(rest[:5])
    with admission.admit():  # 7 in flight: (7 + 1) x 0.25 s / 2 = 1 s, admitted
        assert admission.in_flight == 8
    release(rest[5:])


def test_the_speed_is_a_moving_average_of_batches_and_idle_time_does_not_count():
    admission = Admission(max_wait_s=10.0, smoothing=0.5)
    admission.observe(units=4, seconds=0.4)  # 0.1 s a unit
    admission.observe(units=2, seconds=0.6)  # 0.3 s a unit: the average moves halfway
    assert admission.unit_s == pytest.approx(0.2)
    for _ in range(20):  # the model speeds up: old batches are forgotten
        admission.observe(units=1, seconds=0.01)
    assert admission.unit_s == pytest.approx(0.01, rel=1e-3)
    measured = admission.unit_s
    release(hold(admission, 3))  # requests come and go, an hour passes: no batch, no change
    assert admission.unit_s == measured


def test_refusals_failures_and_slow_uploads_do_not_change_the_estimate_and_release_their_work():
    admission = Admission(max_wait_s=1.0)
    admission.observe(units=2, seconds=1.0)  # 0.5 s an image
    for _ in range(20):  # quick failures (a 504, a bad image...) while the service stays slow
        with pytest.raises(RuntimeError), admission.admit():
            raise RuntimeError("timed out")
    assert admission.unit_s == pytest.approx(0.5), "failures say nothing of the speed"
    assert admission.outstanding == 0 and admission.in_flight == 0, "and hold nothing once they are over"
    uploading = hold(admission, 1)  # a client sending its body a byte a second holds one image's worth
    with admission.admit():  # (1 + 1) x 0.5 s = 1 s: a second request is still admitted
        pass
    with pytest.raises(QueueFull):
        hold(admission, 2)  # (1 + 2) x 0.5 s
    release(uploading)
    assert admission.outstanding == 0


def test_a_ticket_grows_to_its_images_and_a_big_batch_is_refused_while_others_wait():
    admission = Admission(max_wait_s=1.0)
    admission.observe(units=10, seconds=0.1)  # 10 ms a unit
    assert image_units(PIXELS_PER_UNIT) == 2.0 and image_units(0) == 1.0
    with admission.admit() as alone:
        alone.grow(500)  # nothing else outstanding: admitted whatever it costs
        assert admission.outstanding == 500
    small = hold(admission, 1)
    with admission.admit() as big:
        with pytest.raises(QueueFull):
            big.grow(200)  # 2 s of images while another request waits
        big.grow(50)  # half a second is fine
        assert admission.outstanding == 51
    release(small)
    assert admission.outstanding == 0
