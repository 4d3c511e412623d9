"""uvicorn's h11 connection with a deadline on each request head.

uvicorn closes a keep-alive connection only after it has been idle for
``timeout_keep_alive``, and any byte received restarts that wait: a client that
opens connections and sends nothing, or sends a head a byte at a time, holds them
for ever. Here every head (the first on a connection, and each after a response)
must be complete within ``head_timeout_s`` of the moment the server began waiting
for it (with the rest of a body the app refused without reading), or the
connection is closed. Bodies the app reads are bounded by the request deadline
(``service.middleware``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["guarded_h11"]


class _GuardedH11Protocol(H11Protocol):
    head_timeout_s = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._answering():  # a new request's head is in
            self._head_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._answering():
            self._wait_for_head()  # and for the rest of a body the app did not read (a refusal)

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _wait_for_head(self) -> None:
        self._head_received()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _head_received(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._answering() and not self.transport.is_closing():
            self.logger.info("closing a connection whose request head did not arrive within %g s", self.head_timeout_s)
            self.transport.close()


def guarded_h11(head_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol class, closing connections whose request head takes longer than ``head_timeout_s``."""
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), {"head_timeout_s": head_timeout_s})
