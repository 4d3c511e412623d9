"""Admission control after Little's law: a request is refused (503) unless the work admitted before it would be
answered within ``max_wait_s``.

Work counts in image units (an image plus its megapixels) and its speed is learnt only in the model threads,
so a slow client or a burst of refusals cannot teach it a speed the model does not have; with nothing
outstanding every request is admitted, so it cannot stay shut.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import QueueFull

__all__ = ["PIXELS_PER_UNIT", "Admission", "Ticket", "image_units"]

PIXELS_PER_UNIT = 1 << 20  # decoding and resizing a megapixel is weighed as one more image


def image_units(pixels: int) -> float:
    """The work of one image of ``pixels`` pixels, in units of a small image."""
    return 1.0 + pixels / PIXELS_PER_UNIT


class Ticket:
    """The work one admitted request holds; it may grow once the request's images are known."""

    __slots__ = ("_admission", "units")

    def __init__(self, admission: Admission, units: float) -> None:
        self._admission = admission
        self.units = units

    def grow(self, units: float) -> None:
        """Hold ``units`` in all (never less than now); raise ``QueueFull`` if the service cannot take them."""
        extra = units - self.units
        if extra > 0:
            self._admission.reserve(extra, held=self.units)
            self.units = units


class Admission:
    """Work admitted and not yet answered, bounded by the time the model threads need for it.

    Args:
        max_wait_s: Longest expected wait for a new request (the service uses a third of its deadline).
        workers: Model threads working side by side.
        smoothing: Weight of the newest batch in the moving average of seconds per unit.
    """

    def __init__(self, max_wait_s: float, workers: int = 1, smoothing: float = 0.1) -> None:
        self.max_wait_s = max_wait_s
        self.workers = workers
        self.smoothing = smoothing
        self.outstanding = 0.0  # image units admitted and not yet answered
        self.in_flight = 0  # requests admitted and not yet answered
        self.unit_s: float | None = None  # model-thread seconds per image unit; None before any batch
        self._lock = threading.Lock()  # observe() runs in the model threads

    def expected_wait_s(self, units: float = 1.0) -> float | None:
        """How long ``units`` more would wait for the model threads; None before any measurement."""
        if self.unit_s is None:
            return None
        return (self.outstanding + units) * self.unit_s / self.workers

    def observe(self, units: float, seconds: float) -> None:
        """One batch of ``units`` took ``seconds`` of a model thread: update the seconds per unit."""
        if units <= 0 or seconds < 0:
            return
        sample = seconds / units
        with self._lock:
            previous = self.unit_s
            self.unit_s = sample if previous is None else previous + self.smoothing * (sample - previous)

    def reserve(self, units: float, held: float = 0.0) -> None:
        """Count ``units`` more as outstanding, or raise ``QueueFull`` if they would wait too long.

        ``held``: units the caller holds already (a request growing its ticket); with nothing else
        outstanding the request is admitted whatever its size.
        """
        expected = self.expected_wait_s(units)
        if expected is not None and self.outstanding > held and expected > self.max_wait_s:
            msg = (
                f"the service is behind: the work it has accepted would take about {expected:.1f} s, longer "
                f"than the {self.max_wait_s:.1f} s a new request may wait; retry after the Retry-After seconds, "
                "or add replicas if this persists"
            )
            raise QueueFull(msg)
        self.outstanding += units

    @contextmanager
    def admit(self, units: float = 1.0) -> Iterator[Ticket]:
        """Admit one request of ``units`` for the ``with`` block, or raise ``QueueFull``; released however it ends."""
        self.reserve(units)
        ticket = Ticket(self, units)
        self.in_flight += 1
        try:
            yield ticket
        finally:
            self.in_flight -= 1
            self.outstanding = max(self.outstanding - ticket.units, 0.0) if self.in_flight else 0.0
