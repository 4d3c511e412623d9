"""``ilcs serve``: the app under uvicorn, configured by ``ILCS_*`` environment variables.

Before binding, the checkpoint is verified (``model_zoo.checkpoint.load_checkpoint``): a tampered,
foreign or pickled checkpoint stops ``ilcs serve`` with its reason and exit
status 2, before anything listens; so does an ``ILCS_BACKEND`` this installation cannot run.

A warm-up (or start-up calibration) that fails, a GPU that cannot run the model say, would leave
a process that never turns ready: ``ilcs serve`` then logs why and exits with status 3, so that
Docker's ``restart: on-failure`` or Kubernetes starts it again.

Graceful shutdown (``DrainingServer``): on SIGTERM (or Ctrl-C) the service stops
admitting (new requests and ``/readyz`` answer 503 with ``Retry-After``) but keeps
its port open and finishes every request it accepted; once none is in flight and
at least ``ILCS_DRAIN_S`` has passed, uvicorn's own shutdown closes the port and
the lifespan stops the batcher, and the process exits 0. A second signal, or
``ILCS_DRAIN_S + ILCS_REQUEST_TIMEOUT_S + 1`` seconds (every accepted request has
had its deadline by then), ends the drain at once.

Access-log lines keep only the query parameters the API knows (``heatmap``,
``width``, ``height``): any other parameter, such as a key someone put in the
URL, is logged as ``***``.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from urllib.parse import parse_qsl, urlencode

import uvicorn
from fastapi import FastAPI

from model_zoo.checkpoint import load_checkpoint
from model_zoo.device import resolve_device
from service.backends import check_backend
from service.device_check import checked_device
from service.logs import configure_logging
from service.main import create_app
from service.protocol import guarded_h11
from service.settings import Settings, get_settings

__all__ = ["DrainingServer", "RedactQuery", "build_server", "serve"]

log = logging.getLogger("service")
STARTUP_FAILURE = 3  # uvicorn's exit status when the app's start-up failed; also ours when warm-up fails


def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the service until SIGTERM/Ctrl-C; ``host``/``port`` override ILCS_HOST/ILCS_PORT."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings = checked_device(settings)  # a GPU this host lacks: one line and exit 78 (or the CPU fallback)
    load_checkpoint(settings.checkpoint)  # CheckpointError (a ValueError): `ilcs serve: error: ...`, exit 2
    check_backend(settings.backend, resolve_device(settings.device))  # BackendUnavailable (a ValueError): the same
    server = build_server(create_app(settings), settings, host, port)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
    if server.start_up_failed is not None:
        log.error("exiting with status %d: %s", STARTUP_FAILURE, server.start_up_failed)
        raise SystemExit(STARTUP_FAILURE)


def build_server(app: FastAPI, settings: Settings, host: str | None = None, port: int | None = None) -> DrainingServer:
    """The uvicorn server ``ilcs serve`` runs: one process, draining shutdown, redacted access log."""
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level=settings.log_level,
        # One process: the model and its batcher live in it. Scale out with replicas, not workers.
        workers=1,
        # h11, not httptools: h11 refuses oversized headers (uvicorn's httptools has no limit: a 1 MB header
        # reached the app) and malformed request lines; httptools' speed matters little beside the model's.
        http=guarded_h11(settings.header_timeout_s),  # uvicorn's h11, with a deadline on each request head
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        loop="auto",  # uvloop where installed (a dependency on Linux): a cheaper event loop
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
        log_config=None,  # the root logger's handler (service.logs) formats uvicorn's lines too
        access_log=False,  # the app writes its own access lines (service.access_log)
    )
    access = logging.getLogger("uvicorn.access")  # configured by uvicorn.Config above
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())
    return DrainingServer(config, app, settings)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose first SIGTERM/SIGINT drains the service before uvicorn's shutdown runs."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings) -> None:
        super().__init__(config)
        self.app = app
        self.min_drain_s = settings.drain_s
        self.max_drain_s = settings.drain_s + settings.request_timeout_s + 1
        self.drain_started: float | None = None
        self.start_up_failed: str | None = None  # why the warm-up (or calibration) failed: exit, be restarted

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is not None or self.should_exit:
            super().handle_exit(sig, frame)  # a second signal: uvicorn's shutdown now
            return
        self.drain_started = time.monotonic()
        runtime = getattr(self.app.state, "runtime", None)
        if runtime is not None:
            runtime.stop_admitting()
        log.info("%s: draining; %d requests in flight", signal.Signals(sig).name, self._in_flight())

    async def on_tick(self, counter: int) -> bool:
        runtime = getattr(self.app.state, "runtime", None)
        if runtime is not None and runtime.start_up_failed and self.start_up_failed is None:
            # Unready for ever is no use: exit non-zero, so that the orchestrator starts a fresh process.
            self.start_up_failed = runtime.not_ready_reason
            self.should_exit = True
        if self.drain_started is not None and not self.should_exit:
            waited = time.monotonic() - self.drain_started
            if (waited >= self.min_drain_s and self._in_flight() == 0) or waited >= self.max_drain_s:
                log.info("drained in %.2f s (%d requests still in flight)", waited, self._in_flight())
                self.should_exit = True
        return await super().on_tick(counter)

    def _in_flight(self) -> int:
        return self.app.state.metrics.requests_in_flight()


class RedactQuery(logging.Filter):
    """Replace the value of every query parameter but ``heatmap``, ``width``, ``height`` in access-log lines."""

    KNOWN = frozenset({"heatmap", "width", "height"})

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access record: args = (client, method, path with query, http version, status)
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def redact_query(path: str) -> str:
    """``/classify?width=3&api_key=s3cret`` -> ``/classify?width=3&***`` (an unknown name may be the secret too)."""
    route, _, query = path.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    return route + "?" + "&".join(urlencode([(k, v)]) if k in RedactQuery.KNOWN else "***" for k, v in pairs)
