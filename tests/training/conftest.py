"""Fixtures for the training, tuning and tracking tests: one tiny synthetic dataset and a tiny config."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TrackedRun:
    """One tracked training run shared by the loop and tracking tests (training is the expensive part)."""

    cfg: EquisegConfig
    result: object  # equiseg.training.TrainResult
    tracker: object  # equiseg.tracking.Tracker
    run_id: str
    out_dir: Path


@pytest.fixture(scope="session")
def tracked_run(tiny_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackedRun]:
    """``equiseg_tiny``, 3 epochs (robustness suite on the last), logged to a fresh SQLite MLflow store."""
    from equiseg.tracking import Tracker, train_tracked

    manifest, root = tiny_data
    base = tmp_path_factory.mktemp("tracked")
    cfg = load_config(
        "smoke",
        (
            *TINY_OVERRIDES,
            "train.epochs=3",
            "train.eval_robustness_every=3",
            f"tracking.uri=sqlite:///{base}/runs/mlflow.db",
            f"tracking.artifact_location={base}/runs/mlartifacts",
            "tracking.experiment=test-exp",
        ),
    )
    previous = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"
    try:
        tracker = Tracker(cfg.tracking)
        with tracker.start_run(run_name="pipeline-train") as run_id:
            tracker.set_lineage_tags(dataset_version="md5-abc.dir", git_commit="0123abc", pipeline_run_id="pr-7")
            result = train_tracked(cfg, manifest=manifest, data_root=root, out_dir=base / "out", tracker=tracker,
                                   show_progress=False)  # fmt: skip
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", None)
        else:
            os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = previous
    yield TrackedRun(cfg=cfg, result=result, tracker=tracker, run_id=run_id, out_dir=base / "out")
