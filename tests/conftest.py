"""Shared fixtures: where the real NEU data is (tests on it skip cleanly without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEU_DIR = Path(os.environ.get("ILCS_NEU_DIR", ROOT.parent / "shared" / "data" / "neu-det"))


@pytest.fixture(scope="session")
def neu_dir() -> Path:
    if not (NEU_DIR / "images").is_dir():
        pytest.skip(f"real NEU data not found at {NEU_DIR} (set ILCS_NEU_DIR); this test needs it")
    return NEU_DIR
