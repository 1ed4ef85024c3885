"""Train inside a tracked run: :func:`train_tracked`, written once for the CLI, the pipeline and tuning.

The loop (:func:`equiseg.training.train`) knows nothing of MLflow; this module turns a :class:`Tracker` into
:class:`~equiseg.training.TrainHooks` (per-step and per-epoch metrics) and logs what a finished run leaves behind:
the best objective, the curves, sample predictions, ``config.yaml`` and, with ``log_model``, the best model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from equiseg.config import EquisegConfig
from equiseg.tracking.runs import Tracker
from equiseg.training import TrainHooks, TrainResult, load_model_from_checkpoint, train, val_batches

__all__ = ["TrackingHooks", "train_tracked"]

#: Per-step metrics go to MLflow every this many global steps (and at each epoch's first step).
STEP_LOG_EVERY = 10


class TrackingHooks:
    """:class:`TrainHooks` that log to the active run of ``tracker`` and then call ``inner``'s hooks."""

    def __init__(self, tracker: Tracker, inner: TrainHooks | None = None) -> None:
        self.tracker = tracker
        self.inner = inner or TrainHooks()

    def on_step(self, epoch_step: int, global_step: int, metrics: dict[str, float]) -> None:
        """Per-step loss and LR every :data:`STEP_LOG_EVERY` steps."""
        if global_step % STEP_LOG_EVERY == 0 or epoch_step == 1:
            self.tracker.log_metrics(metrics, step=global_step)
        if self.inner.on_step is not None:
            self.inner.on_step(epoch_step, global_step, metrics)

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Every epoch's metrics at step ``epoch``."""
        self.tracker.log_metrics(metrics, step=epoch)
        if self.inner.on_epoch is not None:
            self.inner.on_epoch(epoch, metrics)

    def hooks(self) -> TrainHooks:
        """The :class:`TrainHooks` to pass to :func:`~equiseg.training.train`."""
        return TrainHooks(
            on_step=self.on_step,
            on_epoch=self.on_epoch,
            should_stop=self.inner.should_stop,
            on_checkpoint=self.inner.on_checkpoint,
        )


def train_tracked(
    cfg: EquisegConfig,
    *,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    tracker: Tracker,
    hooks: TrainHooks | None = None,
    resume: Path | bool | None = None,
    log_model: bool = True,
    show_progress: bool = True,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    lineage: Mapping[str, str | None] | None = None,
) -> TrainResult:
    """:func:`~equiseg.training.train` inside an MLflow run; returns its result with ``mlflow_run_id`` and
    ``model_uri`` filled in.

    Rank 0 logs into the active run, or opens one (``run_name``, default ``train-<model>``, with ``tags``): the
    config, lineage tags (``lineage``: ``dataset_version``, ``pipeline_run_id``, ...; the git commit is detected),
    per-step and per-epoch metrics, curves, sample predictions and, with ``log_model``, the best model. Other
    torchrun ranks train without tracking.
    """
    if int(os.environ.get("RANK", "0")) != 0:  # non-zero ranks never talk to MLflow
        return train(cfg, manifest=manifest, data_root=data_root, out_dir=out_dir, hooks=hooks, resume=resume,
                     show_progress=show_progress)  # fmt: skip
    name = run_name or f"train-{cfg.model.name}"
    with tracker.start_run(run_name=name, tags=tags, reuse_active=True) as mlflow_run_id:
        tracker.log_config(cfg)
        tracker.set_tags({"equiseg.model": cfg.model.name, "equiseg.world_size": os.environ.get("WORLD_SIZE", "1")})
        tracker.set_lineage_tags(**dict(lineage or {}))
        result = train(
            cfg,
            manifest=manifest,
            data_root=data_root,
            out_dir=out_dir,
            hooks=TrackingHooks(tracker, hooks).hooks(),
            resume=resume,
            show_progress=show_progress,
        )
        model_uri = log_outcome(tracker, cfg, result, manifest=manifest, data_root=data_root, log_model=log_model)
    return dataclasses.replace(result, mlflow_run_id=mlflow_run_id, model_uri=model_uri)


def log_outcome(
    tracker: Tracker, cfg: EquisegConfig, result: TrainResult, *, manifest: Path, data_root: Path, log_model: bool
) -> str | None:
    """Log a finished training into the active run; returns the logged model's URI (``None`` without one)."""
    tracker.log_metrics({k: v for k, v in result.metrics.items() if k in ("best_objective", "best_epoch")})
    tracker.log_curves(result.history)
    if result.last_checkpoint.is_file():
        _log_predictions(tracker, cfg, result.last_checkpoint, manifest, data_root)
    tracker.log_artifact(result.last_checkpoint.parent / "config.yaml")
    if not log_model or result.stopped or not result.best_checkpoint.is_file():
        return None
    model_uri = tracker.log_model(result.best_checkpoint, name="model")
    tracker.set_tags({"equiseg.model_uri": model_uri})
    return model_uri


@torch.no_grad()
def _log_predictions(tracker: Tracker, cfg: EquisegConfig, checkpoint: Path, manifest: Path, data_root: Path) -> None:
    """``figures/predictions.png``: the final model on the first validation batch."""
    model, _ckpt = load_model_from_checkpoint(checkpoint, device="cpu")
    batch = val_batches(cfg, manifest, data_root, max_batches=1)[0]
    inputs, labels = batch["inputs"], batch["label"]
    predictions = model(inputs).logits.argmax(1)
    tracker.log_sample_predictions(inputs, labels, predictions, artifact_file="figures/predictions.png")
