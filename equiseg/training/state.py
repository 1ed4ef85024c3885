"""The loop's state between steps: seeding, resuming from ``last.pt`` and writing ``last.pt`` / ``best.pt``.

**Crash safety.** ``last.pt`` is rewritten atomically at every epoch end and every ``train.checkpoint_every_steps``
steps; ``train(..., resume=True)`` continues from it: same weights, optimiser moments, LR step, RNG streams, epoch
order and position inside the epoch. Every random choice of an epoch comes from ``(seed, epoch, step)`` or from the
restored generators, so on CPU with ``train.deterministic`` a run killed mid-epoch and resumed ends with the same
metrics as an uninterrupted one.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from equiseg.config import ConfigError, EquisegConfig
from equiseg.data import manifest_info, read_manifest
from equiseg.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, unwrap_model
from equiseg.training.distributed import DistInfo, all_reduce_sum
from equiseg.training.epoch import Progress, resolve_dropout_mode

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "WEIGHT_MEANING_KEYS",
    "TrainState",
    "check_manifest_classes",
    "check_resume_config",
    "configure_determinism",
    "restore_progress",
    "resume_path",
    "save_mid_epoch",
    "stored_config",
    "wrap_distributed",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


@dataclass
class TrainState:
    """Everything a checkpoint is written from: the model, its optimiser, the progress and where files go."""

    cfg: EquisegConfig
    info: DistInfo
    model: nn.Module
    optimizer: torch.optim.Optimizer
    progress: Progress
    out_dir: Path
    config: dict[str, Any]
    #: metrics of the last finished epoch (stored in mid-epoch checkpoints).
    last_metrics: dict[str, float] = field(default_factory=dict)
    #: called with the path of every checkpoint written (``TrainHooks.on_checkpoint``).
    on_checkpoint: Callable[[Path], None] | None = None

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST_CHECKPOINT


def configure_determinism(cfg: EquisegConfig, device: torch.device) -> bool:
    """Seed every generator; on CPU with ``train.deterministic`` require deterministic kernels. Returns old flag."""
    previous = torch.are_deterministic_algorithms_enabled()
    seed = cfg.train.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if cfg.train.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.train.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return previous


def resume_path(resume: Path | bool | None, out_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``True`` means ``out_dir/last.pt`` when it exists, a path that path."""
    if resume is None or resume is False:
        return None
    if resume is True:
        candidate = out_dir / LAST_CHECKPOINT
        if not candidate.is_file():
            logger.info("no %s to resume from in %s; starting fresh", LAST_CHECKPOINT, out_dir)
            return None
        return candidate
    return Path(resume)


def restore_progress(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: EquisegConfig
) -> tuple[Progress, Mapping[str, Any] | None]:
    """Load ``path`` into ``model`` and ``optimizer``; returns the stored progress and generator states.

    Raises:
        CheckpointError: the checkpoint is unreadable or holds another model than ``cfg.model.name``.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if ckpt["model_name"] != cfg.model.name:
        raise CheckpointError(
            f"{path} holds a {ckpt['model_name']} but the config trains {cfg.model.name}; resume "
            f"with the checkpoint's config ({path.parent / 'config.yaml'}) or start a fresh out_dir"
        )
    try:
        unwrap_model(model).load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit {cfg.model.name} as configured: {exc}") from exc
    if ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    progress = Progress(
        epoch=int(ckpt["epoch"]),
        epoch_step=int(ckpt["epoch_step"]),
        global_step=int(ckpt["global_step"]),
        best_metric=ckpt.get("best_metric"),
        best_epoch=int(ckpt.get("metrics", {}).get("best_epoch", -1)),
        history=[dict(h) for h in ckpt.get("history", [])],
        epoch_loss_sum=[float(v) for v in ckpt.get("partial_epoch_loss") or [0.0, 0.0, 0.0]],
    )
    logger.info("resumed from %s at epoch %d step %d", path, progress.epoch, progress.epoch_step)
    return progress, ckpt.get("rng") or None


def wrap_distributed(model: nn.Module, cfg: EquisegConfig, info: DistInfo) -> tuple[nn.Module, nn.Module]:
    """``(model, train_model)``: under torchrun the model with SyncBatchNorm (CUDA) and its DDP wrapper."""
    if not info.distributed:
        return model, model
    device = info.device
    if device.type == "cuda":  # one set of batch statistics over all ranks (SyncBatchNorm is CUDA-only)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_model = DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=resolve_dropout_mode(cfg) == "drop",  # a dropped modality's branch gets no grad
    )
    return model, train_model


def write_checkpoint(
    state: TrainState, path: Path, *, epoch: int, epoch_step: int, metrics: Mapping[str, float]
) -> None:
    """Write ``path`` from ``state`` (atomically) and hand it to the checkpoint sink."""
    progress = state.progress
    save_checkpoint(
        path,
        model=state.model,
        optimizer=state.optimizer,
        config=state.config,
        epoch=epoch,
        epoch_step=epoch_step,
        global_step=progress.global_step,
        best_metric=progress.best_metric,
        metrics={**metrics, "best_epoch": float(progress.best_epoch)},
        history=progress.history,
        partial_epoch_loss=progress.epoch_loss_sum if epoch_step > 0 else None,
    )
    if state.on_checkpoint is not None:
        state.on_checkpoint(path)


def save_mid_epoch(state: TrainState, epoch: int, steps_per_epoch: int, epoch_step: int, global_step: int) -> None:
    """Every ``train.checkpoint_every_steps`` steps inside an epoch: ``last.pt`` with the epoch's partial loss sums.

    Runs on every rank: the loss sums are all-reduced so the checkpoint keeps the global partial sums.
    """
    every = state.cfg.train.checkpoint_every_steps
    if every <= 0 or global_step % every != 0 or epoch_step >= steps_per_epoch:
        return
    running = state.progress.running_loss_sum
    if running is not None:
        state.progress.epoch_loss_sum = all_reduce_sum(running.clone(), state.info).tolist()
    if state.info.is_main:
        write_checkpoint(state, state.last_path, epoch=epoch, epoch_step=epoch_step, metrics=state.last_metrics)


#: Config keys whose change makes resumed weights mean something else: resume refuses them.
WEIGHT_MEANING_KEYS = (
    "model.name",
    "model.share_encoder_weights",
    "data.source",
    "data.modalities",
    "data.num_classes",
    "data.ignore_index",
    "data.image_size",
)


def _dotted(raw: Mapping[str, Any], key: str) -> Any:
    section, name = key.split(".", 1)
    value = (raw.get(section) or {}).get(name)
    return list(value) if isinstance(value, list | tuple) else value


def check_resume_config(stored: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> list[str]:
    """Compare the config a checkpoint was trained with to the one resuming it.

    Returns:
        Warnings for changed ``train.*`` values (the schedule changes; the weights still mean the same thing).

    Raises:
        CheckpointError: a key of :data:`WEIGHT_MEANING_KEYS` differs (model, data, classes, image size), naming each.
    """
    if not stored:
        return []
    changed = [
        f"{key}: {_dotted(stored, key)!r} -> {_dotted(current, key)!r}"
        for key in WEIGHT_MEANING_KEYS
        if _dotted(stored, key) != _dotted(current, key)
    ]
    if changed:
        raise CheckpointError(
            f"refusing to resume {path}: the config changes what its weights mean ({'; '.join(changed)}); resume "
            f"with the checkpoint's config ({path.parent / 'config.yaml'}) or train into a fresh out_dir"
        )
    old, new = stored.get("train") or {}, current.get("train") or {}
    return [f"train.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(new) if k in old and old[k] != new[k]]


def stored_config(path: Path) -> dict[str, Any]:
    """The resolved config recorded in checkpoint ``path`` (``{}`` when it has none)."""
    return dict(load_checkpoint(path, map_location="cpu").get("config") or {})


def check_manifest_classes(cfg: EquisegConfig, manifest: Path) -> None:
    """Refuse ``data.num_classes`` that differs from the class count the manifest declares (when it declares one).

    Too few classes crash mid-training on an out-of-range label; too many train silently with a diluted mIoU.
    """
    declared = manifest_info(read_manifest(manifest)).num_classes
    if declared is not None and int(declared) != cfg.data.num_classes:
        raise ConfigError(
            f"data.num_classes={cfg.data.num_classes} but {manifest} declares {declared} classes; "
            f"set --set data.num_classes={declared}"
        )
