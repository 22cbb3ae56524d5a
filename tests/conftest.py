"""Shared pytest fixtures: where the shared real data lives (``../shared`` beside the checkout).

Tests that need a shared file take ``shared_data`` (the ``data/`` folder) or call ``shared_set(name)``;
both skip cleanly when the folder is absent (e.g. on CI without the non-redistributable data).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; skips the test when it does not exist."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared folder {SHARED_DIR} is absent")
    return SHARED_DIR


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    """``../shared/data``, the real RGB-D sets (see its README); skips when absent."""
    data = shared_dir / "data"
    if not data.is_dir():
        pytest.skip(f"shared data folder {data} is absent")
    return data


@pytest.fixture(scope="session")
def shared_set(shared_data: Path) -> Callable[[str], Path]:
    """``shared_set("replica_office0")`` -> that folder of ``../shared/data``; skips when it is absent."""

    def locate(name: str) -> Path:
        path = shared_data / name
        if not path.is_dir():
            pytest.skip(f"shared data set {path} is absent")
        return path

    return locate
