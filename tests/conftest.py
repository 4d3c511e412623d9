"""Shared fixtures: where the real NEU data is (tests on it skip cleanly without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import default_neu_root

NEU_DIR = default_neu_root()


@pytest.fixture(scope="session")
def neu_dir() -> Path:
    if not (NEU_DIR / "images").is_dir():
        pytest.skip(f"real NEU data not found at {NEU_DIR} (set ILCS_NEU_DIR); this test needs it")
    return NEU_DIR
