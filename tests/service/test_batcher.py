"""The micro-batcher alone: when it flushes, what it drops, how it fails and stops."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.batcher import Batched, BatchFailed, MicroBatcher
from service.errors import DeadlineExceeded, NotReady, QueueFull
from service.metrics import Metrics

GUARD = 30.0  # seconds before a hung test gives up; no assertion depends on it


class Recorder:
    """A model that doubles its inputs, records its batches and can be held closed."""

    def __init__(self, closed: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not closed:
            self.gate.set()

    def __call__(self, inputs: list[int]) -> list[int]:
        self.batches.append(list(inputs))
        self.entered.set()
        self.gate.wait(GUARD)
        return [2 * x for x in inputs]


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), GUARD))


def batcher(predict, max_batch_size=4, max_delay_s=60.0, queue_size=16) -> MicroBatcher:
    b = MicroBatcher(
        predict, max_batch_size=max_batch_size, max_delay_s=max_delay_s, queue_size=queue_size, metrics=Metrics()
    )
    b.start()
    return b


def later(seconds: float = 60.0) -> float:
    return time.perf_counter() + seconds


def test_a_full_batch_flushes_at_once_without_waiting_for_the_delay():
    async def scenario():
        model = Recorder()
        b = batcher(model, max_batch_size=4, max_delay_s=3600)  # the delay would outlast the guard
        results = await asyncio.gather(*b.submit([1, 2, 3, 4], later()))
        assert [r.output for r in results] == [2, 4, 6, 8]
        assert model.batches == [[1, 2, 3, 4]]
        assert all(isinstance(r, Batched) and r.batch_size == 4 for r in results)
        await b.stop()

    run(scenario)


def test_a_partial_batch_flushes_after_the_delay():
    async def scenario():
        model = Recorder()
        b = batcher(model, max_batch_size=8, max_delay_s=0.01)
        results = await asyncio.gather(*b.submit([1, 2, 3], later()))
        assert [r.output for r in results] == [2, 4, 6] and model.batches == [[1, 2, 3]]
        await b.stop()

    run(scenario)


def test_images_that_arrive_while_the_model_runs_form_the_next_batch():
    async def scenario():
        model = Recorder(closed=True)
        b = batcher(model, max_batch_size=4, max_delay_s=0)
        first = b.submit([1], later())
        await asyncio.to_thread(model.entered.wait, GUARD)
        rest = b.submit([2, 3, 4, 5, 6], later())
        model.gate.set()
        await asyncio.gather(*first, *rest)
        assert model.batches == [[1], [2, 3, 4, 5], [6]]
        await b.stop()

    run(scenario)


def test_cancelled_and_expired_images_are_dropped_before_the_model():
    async def scenario():
        model = Recorder(closed=True)
        b = batcher(model, max_batch_size=8, max_delay_s=0)
        first = b.submit([1], later())
        await asyncio.to_thread(model.entered.wait, GUARD)
        (gone,) = b.submit([2], later())
        (expired,) = b.submit([3], time.perf_counter() - 1)  # deadline already passed
        (kept,) = b.submit([4], later())
        gone.cancel()  # what a request does when its client disconnects
        model.gate.set()
        assert (await kept).output == 8
        with pytest.raises(DeadlineExceeded):
            await expired
        await asyncio.gather(*first)
        assert model.batches == [[1], [4]]
        await b.stop()

    run(scenario)


def test_dropped_images_are_counted_by_reason_and_give_their_places_back_at_once():
    async def scenario():
        model = Recorder(closed=True)
        metrics = Metrics()
        b = MicroBatcher(model, max_batch_size=8, max_delay_s=0, queue_size=2, metrics=metrics)
        b.start()
        first = b.submit([1], later())
        await asyncio.to_thread(model.entered.wait, GUARD)
        gone, expired = b.submit([2], later()) + b.submit([3], time.perf_counter() - 1)
        with pytest.raises(QueueFull):
            b.submit([4], later())
        gone.cancel()
        await asyncio.sleep(0)  # the cancellation's callback runs
        assert b.depth == 1 and metrics.registry.get_sample_value("ilcs_queue_depth") == 1
        (kept,) = b.submit([4], later())  # the cancelled image's place
        model.gate.set()
        assert (await kept).output == 8
        with pytest.raises(DeadlineExceeded):
            await expired
        await asyncio.gather(*first)
        sample = metrics.registry.get_sample_value
        assert sample("ilcs_queue_dropped_total", {"reason": "cancelled"}) == 1
        assert sample("ilcs_queue_dropped_total", {"reason": "expired"}) == 1
        assert sample("ilcs_queue_depth") == 0 and model.batches == [[1], [4]]
        await b.stop()

    run(scenario)


def test_a_failing_batch_fails_every_image_in_it_and_the_next_batch_works():
    calls = []

    def flaky(inputs):
        calls.append(list(inputs))
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return [0 for _ in inputs]

    async def scenario():
        b = batcher(flaky, max_batch_size=3)
        outcomes = await asyncio.gather(*b.submit([1, 2, 3], later()), return_exceptions=True)
        assert all(isinstance(o, BatchFailed) and "out of memory" in str(o) and o.size == 3 for o in outcomes)
        assert [r.output for r in await asyncio.gather(*b.submit([4, 5, 6], later()))] == [0, 0, 0]
        await b.stop()

    run(scenario)


def test_an_exception_returned_for_one_input_fails_that_input_alone():
    def odd_inputs_fail(inputs):
        return [ValueError(f"{x} is odd") if x % 2 else 2 * x for x in inputs]

    async def scenario():
        b = batcher(odd_inputs_fail, max_batch_size=4, max_delay_s=0.05)
        outcomes = await asyncio.gather(*b.submit([1, 2, 3, 4], later()), return_exceptions=True)
        assert [str(o) if isinstance(o, Exception) else o.output for o in outcomes] == ["1 is odd", 4, "3 is odd", 8]
        assert all(o.batch_size == 4 for o in outcomes if isinstance(o, Batched))
        await b.stop()

    run(scenario)


def test_a_model_returning_the_wrong_number_of_outputs_fails_the_batch():
    async def scenario():
        b = batcher(lambda inputs: inputs[:-1], max_batch_size=2)
        outcomes = await asyncio.gather(*b.submit([1, 2], later()), return_exceptions=True)
        assert all(isinstance(o, BatchFailed) and "1 outputs for a batch of 2" in str(o) for o in outcomes)
        await b.stop()

    run(scenario)


def test_a_full_queue_refuses_all_or_nothing():
    async def scenario():
        model = Recorder(closed=True)
        b = batcher(model, max_batch_size=1, max_delay_s=0, queue_size=3)
        first = b.submit([0], later())
        await asyncio.to_thread(model.entered.wait, GUARD)
        queued = b.submit([1, 2], later())
        with pytest.raises(QueueFull):
            b.submit([3, 4], later())  # 2 places needed, 1 free: nothing is queued
        assert b.depth == 2
        model.gate.set()
        await asyncio.gather(*first, *queued)
        assert model.batches == [[0], [1], [2]]
        await b.stop()

    run(scenario)


def test_stop_fails_what_is_queued_and_refuses_new_work():
    async def scenario():
        model = Recorder(closed=True)
        b = batcher(model, max_batch_size=1, max_delay_s=0)
        running = b.submit([1], later())
        await asyncio.to_thread(model.entered.wait, GUARD)
        queued = b.submit([2, 3], later())
        await b.stop()
        model.gate.set()
        for outcome in await asyncio.gather(*running, *queued, return_exceptions=True):
            assert isinstance(outcome, NotReady) and "shutting down" in outcome.detail
        with pytest.raises(NotReady):
            b.submit([4], later())

    run(scenario)


def test_several_workers_run_batches_side_by_side():
    async def scenario():
        model = Recorder(closed=True)
        b = MicroBatcher(model, max_batch_size=2, max_delay_s=0, queue_size=16, metrics=Metrics(), workers=2)
        b.start()
        futures = b.submit([1, 2], later())
        await asyncio.to_thread(model.entered.wait, GUARD)
        futures += b.submit([3, 4], later())
        while len(model.batches) < 2:  # the second worker takes the next batch while the first is held
            await asyncio.sleep(0.001)
        assert model.batches == [[1, 2], [3, 4]]
        model.gate.set()
        assert [r.output for r in await asyncio.gather(*futures)] == [2, 4, 6, 8]
        await b.stop()

    run(scenario)
