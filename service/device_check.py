"""``ILCS_DEVICE`` checked before the service starts: a GPU asked for on a host without one.

With ``ILCS_DEVICE=cuda`` on a host (or container) that sees no CUDA GPU, the
service used to fail inside its start-up with a traceback and exit 3, which a
``restart: unless-stopped`` container turned into a crash loop. Now it writes one
line saying what to change and exits with ``EX_CONFIG`` (78), a configuration
error, before it loads anything; or, with ``ILCS_DEVICE_FALLBACK=cpu``, writes one
warning and serves on the CPU (``ilcs_model_info{device="cpu"}`` shows it).
"""

from __future__ import annotations

import logging

from model_zoo.device import resolve_device
from service.settings import Settings

__all__ = ["EX_CONFIG", "checked_device"]

log = logging.getLogger("service")
EX_CONFIG = 78  # sysexits.h: configuration error


def checked_device(settings: Settings) -> Settings:
    """``settings`` whose device this host has: as given, on the CPU by the fallback, or ``SystemExit(78)``."""
    try:
        resolve_device(settings.device)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: torch's own message for a device string it can't parse
        reason = str(exc).splitlines()[0]
        if settings.device_fallback == "cpu":
            log.warning("ILCS_DEVICE=%s: %s; serving on the CPU (ILCS_DEVICE_FALLBACK=cpu)", settings.device, reason)
            return settings.model_copy(update={"device": "cpu"})
        log.error(
            "ILCS_DEVICE=%s cannot be used: %s. Set ILCS_DEVICE=auto or cpu (or ILCS_DEVICE_FALLBACK=cpu to serve "
            "on the CPU when no GPU is found); exiting with status %d",
            settings.device,
            reason,
            EX_CONFIG,
        )
        raise SystemExit(EX_CONFIG) from None
    return settings
