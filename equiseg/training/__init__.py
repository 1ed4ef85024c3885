"""Training: the loop, LR schedule, losses, checkpoints and DDP helpers (docs/training.md, issue 6).

Public API::

    train(cfg, *, manifest, data_root, out_dir, tracker=None, trial=None, resume=None) -> TrainResult
    load_model_from_checkpoint(path, device="cpu") -> (nn.Module, checkpoint dict)

Imports neither mlflow, kfp nor optuna at module level: the loop runs on a bare GPU box with torch, timm, numpy and
pyarrow only.
"""

from __future__ import annotations

from equiseg.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_from_checkpoint,
    save_checkpoint,
)
from equiseg.training.distributed import DistInfo, epoch_indices, init_distributed
from equiseg.training.loop import (
    TrainResult,
    build_model,
    evaluate,
    robustness_objective,
    train,
    train_one_epoch,
)
from equiseg.training.losses import ohem_cross_entropy, segmentation_loss
from equiseg.training.schedule import lr_at, warmup_steps_for

__all__ = [
    "CheckpointError",
    "DistInfo",
    "TrainResult",
    "build_model",
    "epoch_indices",
    "evaluate",
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
    "warmup_steps_for",
]
