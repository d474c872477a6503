"""Shared test helpers: where the golden Darknet fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

SHARED_SKIP_REASON = (
    "../shared/golden not present: photo-based fixtures are third-party and not committed"
)


def golden_dir() -> Path:
    """The committed golden fixtures (`_synth` sets and synthetic images)."""
    return TESTS_DIR / "data" / "golden"


def shared_golden_dir() -> Path | None:
    """The optional full golden set (photo-based fixtures), or None when absent.

    Looked up in ``$PYDARKNET_SHARED`` (the ``shared`` folder or its ``golden``
    subfolder) if set, otherwise in ``shared/golden`` next to the repository.
    """
    env = os.environ.get("PYDARKNET_SHARED")
    base = Path(env) if env else TESTS_DIR.parents[1] / "shared"
    for cand in (base / "golden", base):
        if (cand / "images").is_dir():
            return cand
    return None


@pytest.fixture
def golden() -> Path:
    return golden_dir()


@pytest.fixture
def shared_golden() -> Path:
    """The photo-based golden folder; skips the test when it is absent."""
    d = shared_golden_dir()
    if d is None:
        pytest.skip(SHARED_SKIP_REASON)
    return d
