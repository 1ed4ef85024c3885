"""Training: the loop, LR schedule, losses, checkpoints and DDP helpers (docs/training.md).

Public API::

    train(cfg, *, manifest, data_root, out_dir, hooks=None, resume=None, show_progress=True) -> TrainResult
    load_model_from_checkpoint(path, device="cpu") -> (nn.Module, checkpoint dict)

Core floor (docs/design.md): imports torch, numpy and pyarrow, never mlflow, kfp or optuna, so the loop runs
on a bare GPU box. Tracking and tuning reach it through :class:`TrainHooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace

if TYPE_CHECKING:
    from equiseg.training.checkpoint import (
        CheckpointError,
        load_checkpoint,
        load_model_from_checkpoint,
        save_checkpoint,
    )
    from equiseg.training.distributed import DistInfo, epoch_indices, init_distributed
    from equiseg.training.epoch import build_model, build_optimizer, train_one_epoch
    from equiseg.training.loaders import val_batches
    from equiseg.training.loop import TrainHooks, TrainResult, train
    from equiseg.training.losses import ohem_cross_entropy, segmentation_loss
    from equiseg.training.schedule import lr_at, warmup_steps_for
    from equiseg.training.validation import robustness_objective, validation_metrics

__all__ = [
    "CheckpointError",
    "DistInfo",
    "TrainHooks",
    "TrainResult",
    "build_model",
    "build_optimizer",
    "epoch_indices",
    "init_distributed",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "lr_at",
    "ohem_cross_entropy",
    "robustness_objective",
    "save_checkpoint",
    "segmentation_loss",
    "train",
    "train_one_epoch",
    "val_batches",
    "validation_metrics",
    "warmup_steps_for",
]

#: public name -> the module that defines it, imported on first use (equiseg.lazy)
_LAZY: dict[str, str] = {
    "build_model": "equiseg.training.epoch",
    "build_optimizer": "equiseg.training.epoch",
    "CheckpointError": "equiseg.training.checkpoint",
    "DistInfo": "equiseg.training.distributed",
    "epoch_indices": "equiseg.training.distributed",
    "init_distributed": "equiseg.training.distributed",
    "load_checkpoint": "equiseg.training.checkpoint",
    "load_model_from_checkpoint": "equiseg.training.checkpoint",
    "lr_at": "equiseg.training.schedule",
    "ohem_cross_entropy": "equiseg.training.losses",
    "robustness_objective": "equiseg.training.validation",
    "save_checkpoint": "equiseg.training.checkpoint",
    "segmentation_loss": "equiseg.training.losses",
    "train": "equiseg.training.loop",
    "train_one_epoch": "equiseg.training.epoch",
    "TrainHooks": "equiseg.training.loop",
    "TrainResult": "equiseg.training.loop",
    "val_batches": "equiseg.training.loaders",
    "validation_metrics": "equiseg.training.validation",
    "warmup_steps_for": "equiseg.training.schedule",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
