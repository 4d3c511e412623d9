"""Dynamic micro-batching of single inputs into batch calls, after Ray Serve's ``_BatchQueue`` and LitServe.

A bounded queue refuses at once when full, so overload turns into fast refusals rather
than unbounded latency; a batch whose function fails fails its own inputs with one
exception type, ``BatchFailed``, which the caller maps to its own errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service.errors import DeadlineExceeded, NotReady, QueueFull
from service.metrics import Metrics

__all__ = ["BatchFailed", "Batched", "MicroBatcher", "Pending", "call_batch"]

T = TypeVar("T")
log = logging.getLogger("service")


class BatchFailed(Exception):
    """A batch function raised, or returned a different number of outputs: every input of the batch fails with this.

    Args:
        size: Inputs in the failed batch.
        cause: What went wrong (also the exception's ``__cause__``).
    """

    def __init__(self, size: int, cause: BaseException) -> None:
        super().__init__(f"a batch of {size} inputs failed: {cause}")
        self.size = size
        self.cause = cause
        self.__cause__ = cause


def call_batch(fn: Callable[[list[Any]], Sequence[T]], inputs: list[Any]) -> Sequence[T]:
    """``fn(inputs)``, checked to give one output per input.

    Raises:
        BatchFailed: ``fn`` raised, or returned the wrong number of outputs.
    """
    try:
        outputs = fn(inputs)
    except Exception as exc:
        raise BatchFailed(len(inputs), exc) from exc
    if len(outputs) != len(inputs):
        raise BatchFailed(len(inputs), RuntimeError(f"{len(outputs)} outputs for a batch of {len(inputs)} inputs"))
    return outputs


@dataclass(eq=False, slots=True)
class Pending:
    input: Any
    future: asyncio.Future
    deadline: float  # time.perf_counter() after which nobody waits for the answer
    enqueued: float
    queued: bool = True  # holds a place in the queue (until the batcher takes it or its future is cancelled)


@dataclass(frozen=True, slots=True)
class Batched(Generic[T]):
    """One input's output, with how long it queued and the size of the batch it was in."""

    output: T
    queue_s: float
    batch_size: int


class MicroBatcher(Generic[T]):
    """Batch single inputs for ``predict(list_of_inputs) -> list_of_outputs``, off the event loop.

    One background task flushes a batch at ``max_batch_size`` inputs or ``max_delay_s`` after its
    first, drops inputs nobody waits for any more (cancelled, or past their deadline), and runs it in
    a free model thread; each future gets its output, the exception ``predict`` returned in its place,
    or ``BatchFailed``. ``stop()`` cancels the task and the running batches and fails what is queued.

    Args:
        predict: Runs a batch: one output, or an exception, per input, in order; called in a model
            thread, never on the event loop.
        max_batch_size: Largest batch passed to ``predict``.
        max_delay_s: Longest wait for a batch to fill, counted from its first input.
        queue_size: Inputs that may wait; ``submit`` raises ``QueueFull`` beyond.
        metrics: Where queue depth, queue wait and drops are recorded.
        workers: Model threads, each running one batch at a time.
        on_failure: Told of each batch whose ``predict`` failed, once, before its inputs fail with it.
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
        on_failure: Callable[[BatchFailed], object] | None = None,
    ) -> None:
        self.predict = predict
        self.workers = workers
        self.on_failure = on_failure
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.queue_size = queue_size
        self._metrics = metrics
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()  # its length includes cancelled inputs
        self._waiting = 0  # queued inputs somebody waits for: what queue_size bounds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ilcs-model")
        self._free_workers = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Inputs waiting for a batch (cancelled ones excluded)."""
        return self._waiting

    @property
    def alive(self) -> bool:
        """The batching task runs (it stops only with ``stop()``)."""
        return self._task is not None and not self._task.done()

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
            pending = self._queue.get_nowait()
            self._take(pending)
            self._fail(pending, _shutting_down())
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def finish_running(self) -> None:
        """Wait until the batches already handed to a model thread are done (their futures settled)."""
        await asyncio.gather(*self._running, return_exceptions=True)

    async def run_in_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a model thread (calibration); call it before requests arrive."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_in_every_model_thread(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """Run ``fn(*args)`` once per model worker, side by side (warm-up); before requests arrive."""
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(self._executor, fn, *args) for _ in range(self.workers)))

    def ensure_room(self, count: int = 1) -> None:
        """Raise ``QueueFull`` (or ``NotReady`` when stopping) unless ``count`` inputs would be queued now.

        Requests call it on arrival too, before reading and decoding their images: under overload a
        request that will be refused costs no decoding, which the admitted ones need.
        """
        if self._closed:
            raise _shutting_down()
        if self.queue_size - self._waiting < count:
            msg = (
                f"the service is at capacity ({self._waiting} of {self.queue_size} queue places taken, "
                f"{count} needed); retry after the Retry-After seconds, or add replicas if this persists"
            )
            raise QueueFull(msg)

    def submit(self, inputs: Sequence[Any], deadline: float) -> list[asyncio.Future]:
        """Queue ``inputs`` (all or none) and return one future each.

        Raises:
            QueueFull: There is no room for all of them; nothing was queued.
            NotReady: The batcher is stopping.
        """
        self.ensure_room(len(inputs))
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        futures = []
        for item in inputs:
            pending = Pending(item, loop.create_future(), deadline, now)
            pending.future.add_done_callback(lambda _, p=pending: self._on_done(p))
            self._queue.put_nowait(pending)
            futures.append(pending.future)
        self._waiting += len(inputs)
        self._metrics.queue_depth.set(self._waiting)
        return futures

    def _on_done(self, pending: Pending) -> None:
        # A future done while queued was cancelled (or failed by stop()): its place is free now, not when
        # the batcher reaches it, and its input is not kept alive by the queue.
        if pending.queued:
            self._take(pending)
            pending.input = None

    def _take(self, pending: Pending) -> bool:
        """Account for ``pending`` leaving the queue (once); True if somebody still waits for it."""
        if pending.queued:
            pending.queued = False
            self._waiting -= 1
            self._metrics.queue_depth.set(self._waiting)
            if pending.future.cancelled():
                self._metrics.queue_dropped.labels(reason="cancelled").inc()
        return not pending.future.done()

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
            except Exception as exc:  # a bug here must not stop batching for every later request
                log.exception("batcher: unexpected error; failing this batch and carrying on")
                for pending in batch:
                    self._fail(pending, BatchFailed(len(batch), exc))
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
        batch: list[Pending] = []
        while not batch:  # the first input somebody waits for
            pending = await self._queue.get()
            if self._take(pending):
                batch.append(pending)
        flush_at = time.perf_counter() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                pending = self._queue.get_nowait()
            else:
                remaining = flush_at - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if self._take(pending):
                batch.append(pending)
        return batch

    def _drop_stale(self, batch: list[Pending]) -> list[Pending]:
        # A done future was cancelled by its request (client disconnected or its own timeout fired).
        now = time.perf_counter()
        live = []
        for pending in batch:
            if pending.future.done():  # cancelled while the batch was filling
                self._metrics.queue_dropped.labels(reason="cancelled").inc()
                continue
            if now > pending.deadline:
                waited = now - pending.enqueued
                msg = f"the image waited {waited:.2f} s in the queue, past the request's deadline; retry later"
                pending.future.set_exception(DeadlineExceeded(msg))
                self._metrics.queue_dropped.labels(reason="expired").inc()
                continue
            live.append(pending)
        return live

    async def _run_batch(self, batch: list[Pending]) -> None:
        start = time.perf_counter()
        for pending in batch:
            self._metrics.queue_wait.observe(start - pending.enqueued)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, call_batch, self.predict, [p.input for p in batch])
        except asyncio.CancelledError:
            for pending in batch:
                self._fail(pending, _shutting_down())
            raise
        except BatchFailed as exc:
            log.error("batcher: %s", exc, exc_info=exc.cause)
            if self.on_failure is not None:
                self.on_failure(exc)
            for pending in batch:
                self._fail(pending, exc)
            return
        for pending, output in zip(batch, outputs, strict=True):
            if pending.future.done():
                continue
            if isinstance(output, Exception):  # this input alone failed (an undecodable image, say)
                pending.future.set_exception(output)
            else:
                pending.future.set_result(Batched(output, start - pending.enqueued, len(batch)))

    @staticmethod
    def _fail(pending: Pending, exc: Exception) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _shutting_down() -> NotReady:
    return NotReady("the service is shutting down; retry in a moment (another replica may answer)")
