"""Service settings: ``ILCS_*`` environment variables, read once by ``get_settings()``.

Every knob of the service lives here and nowhere else reads ``os.environ``;
``create_app()`` takes ``get_settings()`` unless given its own ``Settings(...)``
(tests), and routes receive the app's settings through ``deps.SettingsDep``.

``ILCS_API_KEYS`` takes a comma-separated list (``ILCS_API_KEYS=key1,key2``) or
a JSON list; ``ILCS_API_KEYS_FILE`` names a file with one key per line
(``#`` comments and blank lines ignored), e.g. a mounted Docker/Kubernetes secret.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model_zoo.checkpoint import SHIPPED_CHECKPOINT
from service.backends import BackendName

__all__ = ["HeatmapMode", "Settings", "get_settings"]

HeatmapMode = Literal["gray", "overlay", "none"]


class Settings(BaseSettings):
    """Configuration of one service process (environment variables ``ILCS_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="ILCS_", extra="ignore")

    checkpoint: Path = Field(SHIPPED_CHECKPOINT, description="checkpoint stem, .json or .safetensors path")
    device: str = Field("auto", description="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    threads: int | None = Field(None, ge=1, description="torch threads per model worker (CPU default: cores / workers)")
    model_workers: int | None = Field(
        None, ge=1, description="model threads running batches side by side (default: one per CPU core; 2 on a GPU)"
    )
    graph: bool = Field(
        True,
        description="on the CPU, run the model as a frozen TorchScript graph (no Python between its layers, so the "
        "model threads and the request threads do not take turns on the GIL)",
    )
    backend: BackendName = Field(
        "auto",
        description="the runtime of the model: torch, onnxruntime, openvino, or auto (each one installed is measured "
        "at start-up at every batch size, and the fastest serves; the table is in the log and GET /model)",
    )
    onnx_cache: Path | None = Field(
        None,
        description="folder of the ONNX graphs the onnxruntime and openvino backends export from the checkpoint, "
        "one per weights sha256 (default: $XDG_CACHE_HOME/ilcs or ~/.cache/ilcs)",
    )

    max_batch_size: int = Field(16, ge=1, le=256, description="largest batch the model runs")
    max_delay_ms: float = Field(
        5.0, ge=0, le=1000, description="longest wait for a batch to fill after its first image"
    )
    queue_size: int = Field(256, ge=1, description="images waiting for the model before requests get 503")
    request_timeout_s: float = Field(
        10.0, gt=0, description="deadline of a request, from arrival to answer (504 after)"
    )
    drain_s: float = Field(
        0.0,
        ge=0,
        description="after SIGTERM, answer 503 (readiness off) at least this long before closing the port, "
        "so load balancers stop sending; the accepted requests are finished either way",
    )
    calibrate: bool = Field(
        False,
        description="measure the service's end-to-end throughput per batch size at start-up and pick size and delay",
    )
    calibration_seconds: float = Field(1.0, gt=0, description="time spent measuring each batch size when calibrating")
    warmup: bool = Field(True, description="run every batch size once before turning ready")

    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest request body (413 above)")
    max_pixels: int = Field(4096 * 4096, ge=1, description="largest image, in pixels (413 above; bomb guard)")
    max_batch_images: int = Field(64, ge=1, description="most images in one /classify/batch request")
    max_request_pixels: int = Field(
        64 * 1024 * 1024, ge=1, description="most pixels in all the images of one request together (413 above)"
    )
    max_side: int = Field(8192, ge=1, description="longest side of an image, in pixels (413 above)")
    min_side: int = Field(32, ge=1, description="shortest side of an image: smaller shows no defect (422 below)")
    max_aspect: float = Field(16.0, ge=1, description="longest side over shortest side of an image (422 above)")
    uniform_std: float = Field(
        2.0,
        ge=0,
        description="an image whose gray levels vary less than this (standard deviation) is answered "
        "with low_confidence true: there is nothing on it to classify",
    )
    header_timeout_s: float = Field(10.0, gt=0, description="longest time to receive a request's head (then closed)")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this")

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="keys for /classify and /model")
    api_keys_file: Path | None = Field(None, description="file with one API key per line")

    heatmap: HeatmapMode = Field("gray", description="heatmap when the request does not say: gray, overlay or none")
    refusal_delay_s: float = Field(
        2.0,
        ge=0,
        le=10,
        description="hold a 503 Service Busy this long before sending it (a tarpit), so clients that retry at "
        "once cannot spend the CPU on refusals",
    )
    low_confidence_threshold: float = Field(0.5, ge=0, le=1, description="confidence below this is counted as low")

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field("text", description="text, or json: one JSON object per log line")
    access_log: bool = Field(True, description="one access line per request (route, status, latency, label, id)")
    log_probes: bool = Field(False, description="also log /healthz, /readyz and /metrics requests")
    device_fallback: Literal["none", "cpu"] = Field(
        "none", description="cpu: serve on the CPU when ILCS_DEVICE names a GPU this host lacks; none: exit 78"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [k.strip() for k in text.split(",") if k.strip()]
        return value

    def all_api_keys(self) -> list[str]:
        """The keys of ``api_keys`` and of ``api_keys_file``; empty means authentication is off."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text().splitlines()
            except OSError as exc:
                msg = f"ILCS_API_KEYS_FILE {self.api_keys_file} cannot be read ({exc}); fix the path or unset it"
                raise ValueError(msg) from exc
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return keys


@lru_cache
def get_settings() -> Settings:
    """The process's settings, built from the environment once."""
    return Settings()
