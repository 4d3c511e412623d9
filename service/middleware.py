"""One pure-ASGI middleware for what every request shares: its id, its body limit, its metrics.

(Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request and
``receive`` stays the server's, so the disconnect watch in ``pipeline`` works.)

* request id: ``X-Request-ID`` echoed when it is a sane token, else a new one;
  kept in ``request.state.request_id`` and returned as a response header.
* body limits: a ``Content-Length`` over ``max_body_bytes``, or a body that grows
  past it while streaming (chunked uploads), raises ``PayloadTooLarge`` from the
  route's own body read, so the 413 goes through the normal error handlers; a body
  not received within ``body_timeout_s`` of the request's arrival raises
  ``RequestTimeout`` (408, and the connection is closed).
* framing: a request with both ``Content-Length`` and ``Transfer-Encoding`` is
  refused with 400 and its connection closed (RFC 9112 section 6.3: the two may
  disagree on where the body ends, the way requests are smuggled).
* metrics: ``ilcs_requests_total{route,status}`` and ``ilcs_request_duration_seconds{route}``,
  ``route`` being the matched route template ("unmatched" for unknown paths), and
  ``ilcs_requests_in_flight`` (what a graceful shutdown waits for).
"""

from __future__ import annotations

import asyncio
import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BadRequest, PayloadTooLarge, RequestTimeout, problem_for, problem_response
from service.metrics import Metrics

__all__ = ["ServiceMiddleware"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, body_timeout_s: float = 60.0) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else _new_id()
        state = scope.setdefault("state", {})
        state["request_id"], state["start"] = request_id, start
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if b"transfer-encoding" in headers and b"content-length" in headers:
                await self._refuse_framing(scope, request_id, send_with_id)
                return
            limited = self._limited(receive, headers.get(b"content-length"), start + self.body_timeout_s)
            await self.app(scope, limited, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(route=path, status=str(status)).inc()
            self.metrics.request_duration.labels(route=path).observe(time.perf_counter() - start)

    @staticmethod
    async def _refuse_framing(scope: Scope, request_id: str, send: Send) -> None:
        detail = (
            "the request has both Content-Length and Transfer-Encoding, which may disagree on where its body "
            "ends; send one of them (RFC 9112 section 6.3). The connection is closed"
        )
        response = problem_response(
            problem_for(BadRequest(detail), request_id, scope.get("path")), {"Connection": "close"}
        )
        await response(scope, _no_body, send)

    def _limited(self, receive: Receive, content_length: bytes | None, deadline: float) -> Receive:
        limit = self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            if content_length is not None and content_length.isdigit() and int(content_length) > limit:
                raise PayloadTooLarge(_too_large(f"Content-Length is {int(content_length)} bytes", limit))
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.perf_counter(), 0.0))
            except TimeoutError:
                msg = (
                    f"the request body did not arrive within {self.body_timeout_s:g} s of the request "
                    f"({received} bytes came); send it at once, or check the network"
                )
                raise RequestTimeout(msg) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(_too_large(f"the body grew past {received} bytes", limit))
            return message

        return receive_limited


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _new_id() -> str:
    # Not uuid4(): it makes a system call (os.urandom) per id, and an id needs no cryptographic randomness.
    return f"{random.getrandbits(128):032x}"


def _too_large(what: str, limit: int) -> str:
    return (
        f"{what}, more than the limit of {limit} bytes; send one smaller image per request "
        "(or raise ILCS_MAX_BODY_BYTES)"
    )
