"""Admission control: a request is admitted only if it can be answered within its deadline.

The batcher's queue bounds the images waiting for the model, but under overload the
time goes elsewhere too: bodies being read, answers waiting for the event loop, all
on the same cores. Measured on the 2-core VM at twice the saturation rate (when
decoding and encoding still had threads of their own), the image queue held under
100 images while requests waited 10 s and timed out (504). So the whole pipeline is bounded, after Little's law: with
``in_flight`` requests admitted and the service answering one every ``interval``
seconds while busy, a new request would wait about ``(in_flight + 1) * interval``;
above ``max_wait_s`` it is refused at once, before its body is read (503 with
``Retry-After``).

Only answers count (a ``with`` block left without an exception): a refusal or a
timeout inside the block is quick, and counting it as the service's speed made the
estimate collapse under overload, each refusal letting more requests in (measured:
at 2 x saturation with a queue of 2048, 879 requests in flight and 736 unanswered).

The interval is measured over the last ``window`` answers of a busy period (the
time from the first to the last, divided by their gaps): answers come in bursts, a
batch at a time, and an idle gap says nothing of the speed, so a busy period starts
a new window and the last measured interval holds until it has ``min_answers``.
Until the first measurement every request is admitted, and a service answering one
request at a time never gets near the bound: it acts only on a busy service.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import QueueFull

__all__ = ["Admission"]


class Admission:
    """Requests admitted and not yet answered, bounded by their expected wait.

    Args:
        max_wait_s: Longest expected wait for a new request (the service uses a third of its deadline).
        window: Answers of a busy period the interval is measured over.
        min_answers: Answers a window needs before its interval replaces the last one.
    """

    def __init__(self, max_wait_s: float, window: int = 32, min_answers: int = 8) -> None:
        self.max_wait_s = max_wait_s
        self.min_answers = min_answers
        self.in_flight = 0
        self.interval_s: float | None = None  # seconds between two answers while busy
        self._answers: deque[float] = deque(maxlen=window)  # times of this busy period's last answers

    def expected_wait_s(self, count: int = 1) -> float | None:
        """How long ``count`` more requests would take to be answered; None before any measurement."""
        return None if self.interval_s is None else (self.in_flight + count) * self.interval_s

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Admit one request for the ``with`` block, or raise ``QueueFull`` if it would wait too long.

        The block is an answer when it ends without an exception; only answers measure the speed.
        """
        expected = self.expected_wait_s()
        if expected is not None and expected > self.max_wait_s:
            msg = (
                f"the service is behind: the {self.in_flight} requests it is answering would take about "
                f"{expected:.1f} s, longer than the {self.max_wait_s:.1f} s a new one may wait; retry after the "
                "Retry-After seconds, or add replicas if this persists"
            )
            raise QueueFull(msg)
        self.in_flight += 1
        answered = False
        try:
            yield
            answered = True
        finally:
            self._left(answered)

    def _left(self, answered: bool) -> None:
        now = time.perf_counter()
        self.in_flight -= 1
        if answered:
            self._answers.append(now)
            if len(self._answers) >= self.min_answers:
                self.interval_s = (now - self._answers[0]) / (len(self._answers) - 1)
        if self.in_flight == 0:  # the busy period ends: the next one measures afresh
            self._answers.clear()
