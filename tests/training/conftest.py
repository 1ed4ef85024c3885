"""Fixtures for the training, tuning and tracking tests (the tiny config and data are in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from equiseg.config import EquisegConfig, load_config


@dataclass(frozen=True)
class TrackedRun:
    """One tracked training run shared by the loop and tracking tests (training is the expensive part)."""

    cfg: EquisegConfig
    result: object  # equiseg.training.TrainResult
    tracker: object  # equiseg.tracking.Tracker
    run_id: str
    out_dir: Path


@pytest.fixture(scope="session")
def tracked_run(
    tiny_data: tuple[Path, Path], tiny_overrides: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackedRun]:
    """``equiseg_tiny``, 3 epochs (robustness suite on the last), logged to a fresh SQLite MLflow store."""
    from equiseg.tracking import Tracker, train_tracked

    manifest, root = tiny_data
    base = tmp_path_factory.mktemp("tracked")
    cfg = load_config(
        "smoke",
        (
            *tiny_overrides,
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
