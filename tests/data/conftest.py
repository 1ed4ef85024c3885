"""Fixtures for the data-layer tests: a tiny synthetic dataset generated once per session, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from equiseg.data import generate_synthetic

MODALITIES = ("rgb", "depth", "thermal")


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 scenes at 32 px (rgb, depth, thermal); treat as read-only, use ``synthetic_copy`` to mutate."""
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(out, samples=12, size=32, modalities=MODALITIES, seed=7, progress=False)
    return out


@pytest.fixture()
def synthetic_copy(synthetic_source: Path, tmp_path: Path) -> Path:
    """A private, mutable copy of the session's synthetic dataset."""
    target = tmp_path / "data"
    shutil.copytree(synthetic_source, target)
    return target
