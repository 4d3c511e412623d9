"""ILCS_DEVICE naming a GPU the host lacks: one clear line and exit 78, or the CPU when asked for."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.device_check import EX_CONFIG, checked_device

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA GPU")


def test_serve_without_a_gpu_exits_78_with_one_line(tiny_checkpoint):
    ilcs = shutil.which("ilcs", path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILCS_")}
    env.update(ILCS_DEVICE="cuda", ILCS_CHECKPOINT=str(tiny_checkpoint), ILCS_PORT="0")
    result = subprocess.run([ilcs, "serve"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == EX_CONFIG, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "ILCS_DEVICE=cuda" in lines[0] and "ILCS_DEVICE=auto or cpu" in lines[0]


def test_fallback_serves_on_the_cpu(settings, caplog):
    caplog.set_level(logging.WARNING, logger="service")
    checked = checked_device(settings(device="cuda", device_fallback="cpu"))
    assert checked.device == "cpu"
    assert "serving on the CPU" in caplog.text


def test_an_unparsable_device_is_a_configuration_error(settings):
    with pytest.raises(SystemExit) as exit_info:
        checked_device(settings(device="gpu0"))
    assert exit_info.value.code == EX_CONFIG


def test_a_usable_device_is_kept(settings):
    given = settings(device="cpu")
    assert checked_device(given) is given
