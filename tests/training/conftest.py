"""Fixtures for the training, tuning and tracking tests: one tiny synthetic dataset and a tiny config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from equiseg.config import EquisegConfig, load_config

#: 16 samples of 32 px: 12 train (3 steps of 4), 4 val. Small enough for a 2-core box shared by six engineers.
TINY_OVERRIDES = (
    "data.image_size=32",
    "data.samples=16",
    "data.num_classes=4",
    "model.name=equiseg_tiny",
    "train.epochs=2",
    "train.batch_size=4",
    "train.lr=0.002",
    "train.warmup_epochs=0.3",
    "train.device=cpu",
    "train.eval_robustness_every=100",
    "robustness.batch_size=8",
    "robustness.severities=[3]",
    "tune.epochs_per_trial=1",
)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest, data_root) of a 16-sample, 32 px, 4-class synthetic set with rgb, depth and thermal."""
    from equiseg.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("tiny_data")
    manifest = generate_synthetic(
        root, samples=16, size=32, modalities=("rgb", "depth", "thermal"), seed=0, num_classes=4, progress=False
    )
    return manifest, root


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple[str, ...]:
    """The ``--set`` items that shrink the smoke profile for these tests."""
    return TINY_OVERRIDES


@pytest.fixture()
def tiny_cfg() -> Callable[..., EquisegConfig]:
    """Factory: the smoke profile shrunk by :data:`TINY_OVERRIDES` plus extra ``key=value`` overrides."""

    def make(*extra: str) -> EquisegConfig:
        return load_config("smoke", (*TINY_OVERRIDES, *extra))

    return make
