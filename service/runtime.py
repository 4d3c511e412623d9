"""What a running app holds: the engine, the batcher, the metrics, and whether it is ready.

Created by the lifespan in ``main.py`` and kept on ``app.state.runtime``. Ready
means: model loaded, calibrated if asked (the batcher is then built with the
calibrated batch size and delay), the backend chosen by measurement with
``ILCS_BACKEND=auto`` (the engine is then the fastest backend's), every batch
size run once (warm-up).
Until then ``/readyz`` and ``/classify*`` answer 503 with ``Retry-After``, and
again from the moment a graceful shutdown begins (``stop_admitting``).
"""

from __future__ import annotations

import asyncio
import logging

from service import calibration
from service.admission import Admission
from service.batcher import MicroBatcher
from service.errors import NotReady
from service.inference import Engine
from service.intake import ImageLimits
from service.metrics import Metrics
from service.pipeline import Answer, BatchProcessor
from service.schemas import CalibrationRow, ModelInfo, ModelRef, ServingInfo
from service.settings import Settings

__all__ = ["Runtime"]

log = logging.getLogger("service")


class Runtime:
    """The engine, batcher, admission control and metrics of one running app, and whether it is ready."""

    def __init__(self, engine: Engine, settings: Settings, metrics: Metrics) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.limits = ImageLimits.from_settings(settings)
        # A third of the deadline as the expected wait: the measured speed lags a machine that slows down.
        self.admission = Admission(max_wait_s=settings.request_timeout_s / 3, workers=engine.workers)
        self.batcher = self._batcher(calibration.Plan(settings.max_batch_size, settings.max_delay_ms))
        self.calibration: list[CalibrationRow] | None = None
        self.ready = False
        self.stopping = False
        self.not_ready_reason = "the model is warming up"
        self.start_up_failed = False  # `ilcs serve` then exits non-zero, for an orchestrator to restart it
        card = engine.card
        self.model_ref = ModelRef(name=card.name, version=card.version, sha256=card.weights_sha256)
        metrics.set_model(card.name, card.version, card.weights_sha256, str(engine.device))

    def _batcher(self, plan: calibration.Plan) -> MicroBatcher[Answer]:
        processor = BatchProcessor(self.engine, self.metrics, self.settings.uniform_std, self.admission.observe)
        return MicroBatcher(
            processor,
            max_batch_size=plan.batch_size,
            max_delay_s=plan.delay_ms / 1e3,
            queue_size=self.settings.queue_size,
            metrics=self.metrics,
            workers=self.engine.workers,
            on_failure=processor.failed,
        )

    async def start_up(self) -> None:
        """Calibrate (if asked) and warm up in the model threads, then turn ready."""
        try:
            if self.settings.calibrate or self.settings.backend == "auto":
                await self._calibrate()
            if self.settings.warmup:
                size = self.batcher.max_batch_size
                seconds = await self.batcher.run_in_every_model_thread(self.engine.warmup, size)
                log.info("warm-up: batch sizes 1..%d in %.2f s on each of %d workers", size, max(seconds), len(seconds))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # stay alive but unready: /readyz says why, the orchestrator restarts us
            log.exception("start-up preparation failed; the service stays unready")
            self.not_ready_reason = f"start-up failed: {exc}"
            self.start_up_failed = True
            return
        self.ready = True
        log.info("ready: batch size %d, delay %.1f ms", self.batcher.max_batch_size, self.batcher.max_delay_s * 1e3)

    async def _calibrate(self) -> None:
        """With ``auto``, serve with the backend whose bare model is fastest; with calibration, plan the batching
        by the service's end-to-end throughput (``service.calibration``); both in the model threads' time."""
        settings = self.settings
        auto = settings.backend == "auto"
        engines = await self.batcher.run_in_model_thread(calibration.candidates, self.engine, auto)
        if len(engines) == 1 and not settings.calibrate:
            log.info("backend auto: %s is the only one installed", self.engine.backend)
            return
        sizes = tuple(s for s in calibration.DEFAULT_SIZES if s <= settings.max_batch_size) or (1,)
        found = await calibration.calibrate(
            engines, settings, sizes if settings.calibrate else None, self.batcher.run_in_model_thread
        )
        plan = found.plan or calibration.Plan(settings.max_batch_size, settings.max_delay_ms)
        self.calibration = found.rows
        self.engine = found.engine
        # Before any request: the calibrated batcher replaces the configured one, which held nothing yet.
        previous, self.batcher = self.batcher, self._batcher(plan)
        await previous.stop()
        self.batcher.start()
        log.info(
            "calibration on %s:\n%s",
            self.engine.device,
            calibration.format_table(found.rows, plan.batch_size, self.engine.backend),
        )
        log.info("serving with %s, batch size %d, delay %.1f ms", self.engine.backend, plan.batch_size, plan.delay_ms)

    def stop_admitting(self) -> None:
        """Graceful shutdown begins: new requests and /readyz answer 503; the accepted ones carry on."""
        self.stopping = True
        log.info("shutting down: admitting no new requests, finishing the accepted ones")

    def ensure_ready(self) -> None:
        if self.stopping:
            msg = "the service is shutting down; retry after the Retry-After seconds (another replica may answer)"
            raise NotReady(msg)
        if self.engine.broken is not None:  # a sticky device error: an orchestrator should restart this replica
            raise NotReady(self.engine.broken)
        if not self.ready:
            raise NotReady(f"{self.not_ready_reason}; retry after the Retry-After seconds")

    def model_info(self) -> ModelInfo:
        return ModelInfo(
            **self.engine.card.model_dump(),
            serving=ServingInfo(
                device=str(self.engine.device),
                backend=self.engine.backend,
                workers=self.engine.workers,
                threads=self.engine.threads,
                dtype=str(self.engine.dtype).removeprefix("torch."),
                max_batch_size=self.batcher.max_batch_size,
                max_delay_ms=self.batcher.max_delay_s * 1e3,
                queue_size=self.batcher.queue_size,
                calibration=self.calibration,
            ),
        )
