"""Work bounded in memory: four of the costliest images the limits allow, at once, stay under 1 GB.

The service runs as ``ilcs serve`` in its own process (default limits, tiny model), so
its peak resident memory is its own: the kernel's high-water mark (``VmHWM``) is reset
once the service is idle and warm, and read after the four answers.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.loopback import Service

SIDE = 4096  # ILCS_MAX_PIXELS is 4096 x 4096


def _file(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def worst_inputs() -> dict[str, tuple[bytes, str]]:
    """Images of the largest size allowed in the modes that cost most to decode and convert."""
    ramp = np.add.outer(np.arange(SIDE, dtype=np.uint32), np.arange(SIDE, dtype=np.uint32))
    wide = Image.fromarray((ramp * 7 % 65536).astype(np.uint16))  # 16-bit gray: float copies in the conversion
    rgba = Image.fromarray(np.dstack([(ramp % 256).astype(np.uint8)] * 4), "RGBA")
    floats = Image.fromarray((ramp % 1000).astype(np.float32) / 1000.0, "F")
    return {
        "png 16-bit": (_file(wide, "PNG", compress_level=1), "image/png"),
        "png rgba": (_file(rgba, "PNG", compress_level=1), "image/png"),
        "tiff float": (_file(floats, "TIFF", compression="tiff_adobe_deflate"), "image/tiff"),
        "jpeg progressive": (_file(rgba.convert("RGB"), "JPEG", quality=95, progressive=True), "image/jpeg"),
    }


def _kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))


def test_four_of_the_worst_inputs_at_once_stay_under_1_gb_above_idle(tiny_checkpoint):
    inputs = worst_inputs()
    env = {"ILCS_CHECKPOINT": str(tiny_checkpoint), "ILCS_MODEL_WORKERS": "2", "ILCS_THREADS": "1"}
    with Service(4, 2.0, 64, ILCS_REQUEST_TIMEOUT_S="120", **env) as svc:
        url = f"http://{svc.host}:{svc.port}/classify"
        small = _file(Image.fromarray(np.full((64, 64), 99, np.uint8)), "PNG")
        assert httpx.post(url, content=small, headers={"content-type": "image/png"}).status_code == 200
        pid = svc.proc.pid
        idle = _kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
        statuses: dict[str, int] = {}

        def send(name: str, data: bytes, media: str) -> None:
            response = httpx.post(
                url, content=data, headers={"content-type": media}, params={"heatmap": "overlay"}, timeout=300
            )
            statuses[name] = response.status_code

        threads = [threading.Thread(target=send, args=(n, d, m)) for n, (d, m) in inputs.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        peak = _kib(pid, "VmHWM")
    assert statuses == dict.fromkeys(inputs, 200), statuses
    assert (peak - idle) / 1024 < 1024, f"peak {peak / 1024:.0f} MiB against {idle / 1024:.0f} MiB idle"
