"""Fixtures of the service tests: a tiny checkpoint, apps running their lifespan, images in every form.

``serve(**settings)`` runs the app under the real uvicorn server of ``ilcs serve``
(``service.run.build_server``) on a free loopback port in a background thread.
``live(app)`` runs the app's lifespan on an event loop in a background thread and
talks to it with ``httpx.AsyncClient(transport=httpx.ASGITransport(app))``; tests
call it synchronously (``live.post(...)``) or start requests concurrently
(``live.start(...)`` returns a ``concurrent.futures.Future``). ``Gate`` replaces the
batcher's model call with one that records every batch and blocks until opened,
so batching, queue-full and deadline behaviour is tested by construction, never
by timing.
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from model_zoo.checkpoint import ModelCard, save_checkpoint
from model_zoo.registry import create_model
from service.inference import Engine
from service.main import create_app
from service.run import build_server
from service.runtime import Runtime
from service.settings import Settings

LABELS = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
HANG_GUARD_S = 60  # only against a hung test; no assertion depends on time


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real ILCS checkpoint, tiny (64 px input, thin channels) so the suite stays fast on 2 cores."""
    hp = {"input_size": 64, "channels": [8, 16, 32]}
    torch.manual_seed(0)
    model = create_model("ilcs", **hp)
    with torch.no_grad():  # untrained, the features are ~1e-7 and the attention map a flat 0.5: give it contrast
        for conv in (m for m in model.lcs.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.mul_(2.0)
    stem = tmp_path_factory.mktemp("ck") / "tiny"
    save_checkpoint(model, stem, ModelCard(arch="ilcs", labels=LABELS, input_size=64, hyperparameters=hp))
    return stem


@pytest.fixture(scope="session")
def labels() -> list[str]:
    return LABELS


class IsolatedSettings(Settings):
    """Settings from keyword arguments only: an ILCS_* variable in the shell cannot change a test."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **sources):
        return (init_settings,)


@pytest.fixture(scope="session")
def settings(tiny_checkpoint) -> Callable[..., Settings]:
    """``settings(**overrides)``: test settings on the tiny checkpoint, independent of ILCS_* variables."""

    def make(**overrides) -> Settings:
        base = {
            "checkpoint": tiny_checkpoint,
            "device": "cpu",
            "max_batch_size": 8,
            "max_delay_ms": 2.0,
            # One torch thread: a tiny model gains nothing from two, and on a busy 2-core machine
            # two OpenMP threads spinning against other processes make every call ~100x slower.
            "threads": 1,
            # One model worker, so a gated model call holds back every later batch (tests of
            # several workers say so).
            "model_workers": 1,
            # torch alone: "auto" would measure every installed backend at each start (tests/service/test_backends.py
            # covers it)
            "backend": "torch",
        }
        return IsolatedSettings(**{**base, **overrides})

    return make


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Engine.load sets torch's (process-wide) thread count; give other test folders theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class Live:
    """An app with its lifespan running on a background event loop; synchronous calls for tests."""

    def __init__(self, app, wait_ready: bool = True) -> None:
        self.app = app
        self.wait_ready = wait_ready
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stack = AsyncExitStack()

    def __enter__(self) -> Live:
        self._thread.start()
        try:
            self.call(self._open())
            if self.wait_ready:
                wait_until(lambda: self.get("/readyz").status_code == 200, "the app to turn ready")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call(self._stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(HANG_GUARD_S)
            self.loop.close()

    async def _open(self) -> None:
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        transport = httpx.ASGITransport(app=self.app)
        self.client = await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://ilcs")
        )

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(HANG_GUARD_S)

    def start(self, method: str, url: str, **kwargs) -> Future:
        """Send a request without waiting for its answer."""
        return asyncio.run_coroutine_threadsafe(self.client.request(method, url, **kwargs), self.loop)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self.start(method, url, **kwargs).result(HANG_GUARD_S)

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def classify(self, data: bytes, media: str = "image/png", url: str = "/classify", **kwargs) -> httpx.Response:
        headers = {"content-type": media, **kwargs.pop("headers", {})}
        return self.post(url, content=data, headers=headers, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """The current value of one sample of /metrics (0 when absent)."""
        value = self.app.state.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture(scope="session")
def live(settings) -> Callable[..., Live]:
    """``with live(**settings_overrides) as svc:`` a running app on the tiny checkpoint."""

    def make(wait_ready: bool = True, app=None, **overrides) -> Live:
        return Live(app or create_app(settings(**overrides)), wait_ready=wait_ready)

    return make


class Server(NamedTuple):
    host: str
    port: int
    app: FastAPI

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    def metric(self, name: str, **labels: str) -> float:
        value = self.app.state.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@contextmanager
def uvicorn_server(settings: Settings) -> Iterator[Server]:
    """The app under ``ilcs serve``'s uvicorn server on a free loopback port, in a thread, until ready."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    srv = build_server(app, settings.model_copy(update={"log_level": "warning"}))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    running = Server(*sock.getsockname(), app)
    try:
        wait_until(lambda: srv.started or not thread.is_alive(), "uvicorn to start")
        wait_until(lambda: httpx.get(f"{running.url}/readyz").status_code == 200, "the service to turn ready")
        yield running
    finally:
        srv.should_exit = True
        thread.join(HANG_GUARD_S)
        sock.close()


@pytest.fixture(scope="session")
def serve(settings) -> Callable[..., Iterator[Server]]:
    """``with serve(**settings_overrides) as server:`` the service under uvicorn on 127.0.0.1."""
    return lambda **overrides: uvicorn_server(settings(**overrides))


class Gate:
    """Stands in for the batcher's model call: records each batch, blocks until ``open()``."""

    def __init__(self, predict: Callable) -> None:
        self.predict = predict
        self.batches: list[int] = []
        self.entered = threading.Event()
        self._open = threading.Event()

    def __call__(self, inputs: list) -> list:
        self.batches.append(len(inputs))
        self.entered.set()
        self._open.wait(HANG_GUARD_S)
        return self.predict(inputs)

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def gate() -> Iterator[Callable[[Live | Runtime], Gate]]:
    """``gate(svc)`` closes a gate in front of the model of ``svc`` (``Live`` or ``Runtime``), opened at teardown."""
    gates: list[Gate] = []

    def install(target: Live | Runtime) -> Gate:
        batcher = (target.runtime if isinstance(target, Live) else target).batcher
        g = Gate(batcher.predict)
        batcher.predict = g
        gates.append(g)
        return g

    yield install
    for g in gates:
        g.open()


@pytest.fixture
def model_calls() -> Iterator[Callable[[Live | Runtime | Engine], list[int]]]:
    """``model_calls(svc)``: the batch sizes the model of ``svc`` (or an ``Engine``) is called with from now on.

    The batcher's batch also holds images that fail to decode; this is what reached the model itself.
    Restored at teardown.
    """
    installed: list[tuple[Any, Callable]] = []

    def install(target: Live | Runtime | Engine) -> list[int]:
        runtime = target.runtime if isinstance(target, Live) else target
        engine = target if isinstance(target, Engine) else runtime.engine
        calls: list[int] = []
        predict = engine.predict
        engine.predict = lambda inputs: calls.append(len(inputs)) or predict(inputs)
        installed.append((engine, predict))
        return calls

    yield install
    for engine, predict in reversed(installed):
        engine.predict = predict


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds (a hang guard, not a timed assertion)."""
    end = time.monotonic() + HANG_GUARD_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="session")
def until() -> Callable[[Callable[[], bool], str], None]:
    return wait_until


# ---- images in every form -----------------------------------------------------------------


@pytest.fixture(scope="session")
def gray() -> np.ndarray:
    """A 48 x 80 (H x W) gray test image with structure (not square, so sizes are checked both ways)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:80]
    return np.clip(120 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0) + rng.normal(0, 10, (48, 80)), 0, 255).astype(np.uint8)


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def png(gray) -> bytes:
    return encode(gray)


@pytest.fixture(scope="session")
def forms(gray) -> dict[str, tuple[bytes, str]]:
    """The same gray picture in every lossless form a client may send: name -> (bytes, Content-Type)."""
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 200)])
    palette = Image.frombytes("P", (gray.shape[1], gray.shape[0]), gray.tobytes())
    palette.putpalette([v for i in range(256) for v in (i, i, i)])  # a gray palette: lossless
    return {
        "png": (encode(gray), "image/png"),
        "bmp": (encode(gray, "BMP"), "image/bmp"),
        "tiff": (encode(gray, "TIFF"), "image/tiff"),
        "png16": (encode(Image.fromarray(gray.astype(np.uint16) * 257)), "image/png"),
        "rgb": (encode(np.dstack([gray] * 3)), "image/png"),
        "rgba": (encode(Image.fromarray(rgba, "RGBA")), "image/png"),
        "palette": (encode(palette), "image/png"),
        "raw_frame": (gray.tobytes(), "application/octet-stream"),
    }


def png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's header)."""
    body = encode(np.zeros((4, 4), np.uint8))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return body[:8] + chunk + body[8 + len(chunk) :]


@pytest.fixture(scope="session")
def bomb() -> Callable[[int, int], bytes]:
    return png_claiming_size


@pytest.fixture(scope="session")
def images() -> Callable[..., bytes]:
    return encode
