"""Fixtures for the data-layer tests: a tiny synthetic dataset generated once per session, copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

MODALITIES = ("rgb", "depth", "thermal")


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory, make_synthetic: Callable[..., Path]) -> Path:
    """12 scenes at 32 px (rgb, depth, thermal); treat as read-only, use ``synthetic_copy`` to mutate."""
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, samples=12, modalities=MODALITIES, seed=7, num_classes=None)
    return out


@pytest.fixture()
def synthetic_copy(synthetic_source: Path, tmp_path: Path) -> Path:
    """A private, mutable copy of the session's synthetic dataset."""
    target = tmp_path / "data"
    shutil.copytree(synthetic_source, target)
    return target
