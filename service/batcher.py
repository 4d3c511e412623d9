"""Dynamic micro-batching, after Ray Serve's ``_BatchQueue`` and LitServe.

A request puts a ``Pending`` (its prepared input and a ``Future``) into a bounded
``asyncio.Queue``; a full queue is refused at once (``QueueFull``, 503), so
overload turns into fast rejections instead of unbounded latency. One background
task waits for a free model worker, takes the first waiting item, then more until
``max_batch_size`` or until ``max_delay_s`` after the first, drops the items nobody
waits for any more (client gone or deadline passed), and hands the rest to the
worker: ``predict`` runs in one of ``workers`` dedicated model threads (off the
event loop), its output count is checked and every future resolved. A failed
batch sets an exception on every future of that batch and the others carry on.
``stop()`` cancels the task and the running batches and fails what is queued.

Several workers: on a small CPU, two single-threaded model calls side by side
beat one call on two threads (measured on the 2-core development VM: ~135
against ~75 images/s, ``reports/service-bench.md``), and HTTP work preempting one
of them slows only that one instead of stalling a parallel region at every barrier.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service.errors import DeadlineExceeded, InferenceFailed, NotReady, QueueFull
from service.metrics import Metrics

__all__ = ["Batched", "MicroBatcher", "Pending"]

T = TypeVar("T")
log = logging.getLogger("service")


@dataclass(eq=False, slots=True)
class Pending:
    input: Any
    future: asyncio.Future
    deadline: float  # time.perf_counter() after which nobody waits for the answer
    enqueued: float


@dataclass(frozen=True, slots=True)
class Batched(Generic[T]):
    """One input's output, with how long it queued and how long its batch took."""

    output: T
    queue_s: float
    inference_s: float
    batch_size: int


class MicroBatcher(Generic[T]):
    """Batch single inputs for ``predict(list_of_inputs) -> list_of_outputs``.

    Args:
        predict: Runs the model on a batch; called in the model thread, never on the event loop.
        max_batch_size: Largest batch passed to ``predict``.
        max_delay_s: Longest wait for a batch to fill, counted from its first input.
        queue_size: Inputs that may wait; ``submit`` raises ``QueueFull`` beyond.
        metrics: Where queue depth and wait, batch size and inference time are recorded.
        workers: Model threads, each running one batch at a time.
    """

    def __init__(
        self,
        predict: Callable[[list[Any]], Sequence[T]],
        *,
        max_batch_size: int,
        max_delay_s: float,
        queue_size: int,
        metrics: Metrics,
        workers: int = 1,
    ) -> None:
        self.predict = predict
        self.workers = workers
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.queue_size = queue_size
        self._metrics = metrics
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ilcs-model")
        self._free_workers = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Inputs waiting for a batch."""
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ilcs-batcher")

    async def stop(self) -> None:
        """Cancel the batching task and the running batches; fail every input still waiting (503)."""
        self._closed = True
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self._queue.empty():
            self._fail(self._queue.get_nowait(), _shutting_down())
        self._metrics.queue_depth.set(0)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_in_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a model thread (calibration); call it before requests arrive."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_in_every_model_thread(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """Run ``fn(*args)`` once per model worker, side by side (warm-up); before requests arrive."""
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(self._executor, fn, *args) for _ in range(self.workers)))

    def submit(self, inputs: Sequence[Any], deadline: float) -> list[asyncio.Future]:
        """Queue ``inputs`` (all or none) and return one future each.

        Raises:
            QueueFull: There is no room for all of them; nothing was queued.
            NotReady: The batcher is stopping.
        """
        if self._closed:
            raise _shutting_down()
        if self.queue_size - self._queue.qsize() < len(inputs):
            msg = (
                f"the service is at capacity ({self._queue.qsize()} of {self.queue_size} queue places taken, "
                f"{len(inputs)} needed); retry after the Retry-After seconds, or add replicas if this persists"
            )
            raise QueueFull(msg)
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        futures = []
        for item in inputs:
            future = loop.create_future()
            self._queue.put_nowait(Pending(item, future, deadline, now))
            futures.append(future)
        self._metrics.queue_depth.set(self._queue.qsize())
        return futures

    async def _run(self) -> None:
        while True:
            await self._free_workers.acquire()
            batch: list[Pending] = []
            try:
                batch = await self._collect()
                live = self._drop_stale(batch)
            except asyncio.CancelledError:
                for pending in batch:
                    self._fail(pending, _shutting_down())
                raise
            except Exception:  # a bug here must not stop batching for every later request
                log.exception("batcher: unexpected error; failing this batch and carrying on")
                for pending in batch:
                    self._fail(pending, InferenceFailed("unexpected error in the batcher; the request can be retried"))
                live = []
            if not live:
                self._free_workers.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(live))
            self._running.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._free_workers.release()

    async def _collect(self) -> list[Pending]:
        batch = [await self._queue.get()]
        flush_at = time.perf_counter() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = flush_at - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        self._metrics.queue_depth.set(self._queue.qsize())
        return batch

    def _drop_stale(self, batch: list[Pending]) -> list[Pending]:
        # A done future was cancelled by its request (client disconnected or its own timeout fired).
        now = time.perf_counter()
        live = []
        for pending in batch:
            if pending.future.done():
                continue
            if now > pending.deadline:
                waited = now - pending.enqueued
                msg = f"the image waited {waited:.2f} s in the queue, past the request's deadline; retry later"
                pending.future.set_exception(DeadlineExceeded(msg))
                continue
            live.append(pending)
        return live

    async def _run_batch(self, batch: list[Pending]) -> None:
        start = time.perf_counter()
        for pending in batch:
            self._metrics.queue_wait.observe(start - pending.enqueued)
        self._metrics.batch_size.observe(len(batch))
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self.predict, [p.input for p in batch])
            if len(outputs) != len(batch):
                msg = f"the model returned {len(outputs)} outputs for a batch of {len(batch)} inputs"
                raise RuntimeError(msg)
        except asyncio.CancelledError:
            for pending in batch:
                self._fail(pending, _shutting_down())
            raise
        except Exception as exc:
            log.exception("batcher: the model failed on a batch of %d", len(batch))
            for pending in batch:
                self._fail(
                    pending, InferenceFailed(f"the model failed on this image's batch ({exc}); retry the request")
                )
            return
        inference_s = time.perf_counter() - start
        self._metrics.inference.observe(inference_s)
        for pending, output in zip(batch, outputs, strict=True):
            if not pending.future.done():
                pending.future.set_result(Batched(output, start - pending.enqueued, inference_s, len(batch)))

    @staticmethod
    def _fail(pending: Pending, exc: Exception) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _shutting_down() -> NotReady:
    return NotReady("the service is shutting down; retry in a moment (another replica may answer)")
