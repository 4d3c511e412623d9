"""The machine a benchmark ran on, as its report names it: CPU, cores, threads, library versions."""

from __future__ import annotations

import os
import platform
import subprocess

import torch

__all__ = ["machine"]


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def machine() -> dict:
    """CPU model and topology (from lscpu where there is one), torch's threads and ISA, and the versions."""
    import torchvision

    cpu = _lscpu()
    cores = f"{cpu.get('CPU(s)', os.cpu_count())} logical CPUs"
    if cpu:
        cores += (
            f", {cpu.get('Core(s) per socket', '?')} cores per socket x {cpu.get('Socket(s)', '?')} socket(s), "
            f"{cpu.get('Thread(s) per core', '?')} thread(s) per core"
        )
    return {
        "cpu": cpu.get("Model name", platform.processor() or platform.machine()),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }
