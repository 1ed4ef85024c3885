"""The training loop: one :func:`train_one_epoch`, one :func:`evaluate`, and :func:`train` around them (issue 6).

Recipe (EQUISeg §4.1, after SegFormer / CMNeXt): AdamW (no weight decay on norms and biases), linear warm-up + poly
decay (:mod:`equiseg.training.schedule`), CE or OHEM-CE plus the Self-guided Module's auxiliary losses
(``SegmentationOutput.aux_losses``, already weighted by the model), per-sample modality dropout (never every
modality), gradient clipping; bf16 autocast and ``channels_last`` on CUDA, fp32 on CPU.

**Model selection.** After every ``train.eval_robustness_every``-th epoch (and the last) the model is scored on the
clean validation split and on the robustness *quick* suite; the best checkpoint maximises

    objective = (clean_miou + emm_avg) / 2        (mIoU points)

the mean of clean mIoU and the EMM average (expected mIoU over missing-modality patterns). A model that is good on
clean data but collapses when a sensor drops out, or the reverse, scores lower than a balanced one; the same value
is the Optuna objective (:mod:`equiseg.tuning`), so tuning and checkpoint selection pursue one goal.

**Crash safety.** ``last.pt`` is rewritten atomically at every epoch end and every ``train.checkpoint_every_steps``
steps; ``train(..., resume=True)`` continues from it: same weights, optimiser moments, LR step, RNG streams, epoch
order and position inside the epoch. Every random choice of an epoch comes from ``(seed, epoch, step)`` or from the
restored generators, so on CPU with ``train.deterministic`` a run killed mid-epoch and resumed ends with the same
metrics as an uninterrupted one.

This module imports neither mlflow nor optuna at module level (it must run on a bare GPU box).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from equiseg.config import EquisegConfig, config_to_dict, save_config
from equiseg.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from equiseg.training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    epoch_indices,
    init_distributed,
)
from equiseg.training.losses import segmentation_loss
from equiseg.training.schedule import lr_at, warmup_steps_for

if TYPE_CHECKING:
    import optuna

    from equiseg.tracking import Tracker

__all__ = [
    "TrainResult",
    "build_model",
    "build_optimizer",
    "evaluate",
    "robustness_objective",
    "train",
    "train_one_epoch",
]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        best_checkpoint: checkpoint with the highest :func:`robustness_objective`.
        last_checkpoint: checkpoint after the last epoch (resumable).
        metrics: last epoch's metrics plus ``best_objective`` and ``best_epoch``.
        epochs_run: epochs completed in total (including those before a resume).
        run_id: MLflow run id when a tracker was given (rank 0 only).
        model_uri: URI of the logged best model when a tracker was given and ``log_model`` was true.
        history: one metrics dict per completed epoch.
    """

    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, float]
    epochs_run: int
    run_id: str | None = None
    model_uri: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def robustness_objective(metrics: Mapping[str, float]) -> float:
    """``(clean_miou + emm_avg) / 2``; clean mIoU alone when the EMM average was not measured."""
    clean = float(metrics.get("clean_miou", metrics.get("val_miou", float("nan"))))
    emm = metrics.get("emm_avg")
    return clean if emm is None else 0.5 * (clean + float(emm))


# ------------------------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------------------------


def build_model(cfg: EquisegConfig) -> nn.Module:
    """``create_model`` from the ``model:`` and ``data:`` sections."""
    from equiseg.models import FAMILIES, create_model, model_family

    family, _ = model_family(cfg.model.name)
    extra: dict[str, Any] = {}
    if "ignore_index" in FAMILIES[family].options:
        extra["ignore_index"] = cfg.data.ignore_index
    return create_model(
        cfg.model.name,
        num_classes=cfg.data.num_classes,
        modalities=cfg.data.modalities,
        share_encoder_weights=cfg.model.share_encoder_weights,
        sgm_weight=cfg.model.sgm_weight,
        drop_path_rate=cfg.model.drop_path_rate,
        **extra,
    )


def resolve_dropout_mode(cfg: EquisegConfig) -> str:
    """``train.modality_dropout_mode`` for ``cfg.model.name``: ``zero`` or ``drop`` (``auto`` resolved).

    Raises:
        ValueError: ``drop`` for a model that cannot fuse a subset of its modalities.
    """
    from equiseg.models import supports_missing_modalities

    mode = cfg.train.modality_dropout_mode
    capable = supports_missing_modalities(cfg.model.name)
    if mode == "auto":
        return "drop" if capable else "zero"
    if mode == "drop" and not capable:
        raise ValueError(
            f"train.modality_dropout_mode=drop needs a model that fuses modality subsets; {cfg.model.name} does not, "
            "use zero (or auto)"
        )
    return mode


def drop_modalities(inputs: Mapping[str, Tensor], probability: float, seed: Sequence[int]) -> dict[str, Tensor]:
    """Batch-level modality dropout: each modality left out with ``probability`` (never all), drawn from ``seed``.

    Every rank draws the same subset for the same step (the seed is ``(train.seed, epoch, step)``), so DDP replicas
    run the same branches.
    """
    names = list(inputs)
    if probability <= 0.0 or len(names) < 2:
        return dict(inputs)
    rng = np.random.default_rng(list(seed))
    keep = rng.random(len(names)) >= probability
    if not keep.any():
        keep[int(rng.integers(len(names)))] = True
    return {name: inputs[name] for name, kept in zip(names, keep.tolist(), strict=True) if kept}


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices / kernels only (not on norms, biases, scalars)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.999))


def _batches_to_device(
    batch: Mapping[str, Any], device: torch.device, channels_last: bool
) -> tuple[dict[str, Tensor], Tensor]:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    inputs = {
        name: x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        for name, x in batch["inputs"].items()
    }
    return inputs, batch["label"].to(device, non_blocking=True)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class _Progress:
    """Where training stands; what a checkpoint stores besides the state dicts."""

    epoch: int = 0
    epoch_step: int = 0
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    #: (total, main, aux) loss summed over this epoch's steps so far, over all ranks (restored on resume).
    epoch_loss_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    #: running local sums of the current epoch (this rank only), read when a mid-epoch checkpoint is written.
    running_loss_sum: Tensor | None = None


# ------------------------------------------------------------------------------------------------------------------
# one epoch, one evaluation
# ------------------------------------------------------------------------------------------------------------------


def train_one_epoch(
    model: nn.Module,
    loader: Iterator[Mapping[str, Any]] | DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    cfg: EquisegConfig,
    *,
    epoch: int,
    start_step: int,
    steps_per_epoch: int,
    progress: _Progress,
    info: DistInfo,
    on_step: Any = None,
    show_progress: bool = True,
) -> dict[str, float]:
    """Train over ``loader`` (the epoch's batches from ``start_step`` on); returns the epoch's reduced metrics.

    ``on_step(epoch_step, global_step, step_metrics)`` runs after every optimiser step (checkpoints, logging).
    """
    tc = cfg.train
    device = info.device
    total_steps = max(1, tc.epochs * steps_per_epoch)
    warmup = warmup_steps_for(tc.warmup_epochs, steps_per_epoch)
    use_amp = tc.amp and device.type == "cuda"
    drop_at_step = resolve_dropout_mode(cfg) == "drop" and tc.modality_dropout > 0.0
    model.train()
    # (total, main, aux) summed over steps; after a mid-epoch resume rank 0 starts from the stored global sums
    initial = progress.epoch_loss_sum if (start_step > 0 and info.is_main) else [0.0, 0.0, 0.0]
    loss_sum = torch.tensor(initial, dtype=torch.float64, device=device)
    progress.running_loss_sum = loss_sum
    images = 0
    started = time.perf_counter()
    bar = tqdm(
        total=steps_per_epoch,
        initial=start_step,
        desc=f"epoch {epoch + 1}/{tc.epochs}",
        disable=not (show_progress and info.is_main),
        leave=False,
        unit="step",
    )
    step = start_step
    for batch in loader:
        lr = lr_at(
            progress.global_step,
            total_steps=total_steps,
            base_lr=tc.lr,
            warmup_steps=warmup,
            warmup_ratio=tc.warmup_ratio,
            power=tc.poly_power,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, labels = _batches_to_device(batch, device, channels_last=device.type == "cuda")
        if drop_at_step:
            inputs = drop_modalities(inputs, tc.modality_dropout, (tc.seed, epoch, step))
        with _autocast(device, use_amp):
            output = model(inputs, labels)
        main_loss = segmentation_loss(
            output.logits, labels, kind=tc.loss, ignore_index=cfg.data.ignore_index, ohem_thresh=tc.ohem_thresh
        )
        aux = sum((v.float() for v in output.aux_losses.values()), torch.zeros((), device=device))
        loss = main_loss + aux
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at epoch {epoch + 1}, step {step}; lower train.lr "
                f"(now {tc.lr}) or enable train.grad_clip"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        step += 1
        progress.global_step += 1
        progress.epoch_step = step
        detached = torch.stack([loss.detach(), main_loss.detach(), aux.detach()]).double()
        loss_sum += detached
        images += labels.shape[0] * info.world_size
        elapsed = max(time.perf_counter() - started, 1e-9)
        if info.is_main:
            bar.update(1)
            bar.set_postfix(loss=f"{float(detached[0]):.3f}", lr=f"{lr:.2e}", img_s=f"{images / elapsed:.1f}")
        if on_step is not None:
            on_step(step, progress.global_step, {"train_step_loss": float(detached[0]), "lr": lr})
    bar.close()
    all_reduce_sum(loss_sum, info)
    denom = max(1, step) * info.world_size
    elapsed = max(time.perf_counter() - started, 1e-9)
    return {
        "train_loss": float(loss_sum[0]) / denom,
        "train_main_loss": float(loss_sum[1]) / denom,
        "train_aux_loss": float(loss_sum[2]) / denom,
        "lr": lr_at(
            max(0, progress.global_step - 1),
            total_steps=total_steps,
            base_lr=tc.lr,
            warmup_steps=warmup,
            warmup_ratio=tc.warmup_ratio,
            power=tc.poly_power,
        ),
        "train_images_per_s": images / elapsed,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Sequence[Mapping[str, Any]],
    *,
    num_classes: int,
    device: torch.device,
    ignore_index: int = 255,
    absent_as_zero: bool = True,
) -> dict[str, float]:
    """Clean validation: ``val_loss`` (CE) and dataset-level ``val_miou`` / ``val_pixel_acc`` (points)."""
    from equiseg.robustness.metrics import ConfusionMatrix

    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, keep_per_image=False)
    loss_total, count = 0.0, 0
    for batch in batches:
        inputs, labels = _batches_to_device(batch, device, channels_last=device.type == "cuda")
        logits = model(inputs).logits.float()
        loss_total += float(segmentation_loss(logits, labels, kind="ce", ignore_index=ignore_index)) * labels.shape[0]
        count += labels.shape[0]
        matrix.update(logits.argmax(1), labels)
    model.train(was_training)
    hist = np.asarray(matrix.hist, dtype=np.float64)
    accuracy = float(np.trace(hist) / max(hist.sum(), 1.0)) * 100.0
    return {
        "val_loss": loss_total / max(1, count),
        "val_miou": matrix.miou(absent_as_zero),
        "val_pixel_acc": accuracy,
    }


# ------------------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------------------


def _split_dataset(cfg: EquisegConfig, manifest: Path, data_root: Path, split: str) -> Any:
    """``MultimodalDataset`` of one split; the train split augments, crops and drops modalities.

    Its random draws come from ``(seed, epoch, index)`` (``equiseg.data``), so they do not depend on the worker,
    the order, the world size or a resume.
    """
    from equiseg.data.dataset import MultimodalDataset

    training = split == "train"
    return MultimodalDataset(
        Path(manifest),
        Path(data_root),
        modalities=cfg.data.modalities,
        split=split,
        augment=training,
        crop_size=cfg.data.image_size if training else None,
        modality_dropout=cfg.train.modality_dropout if training and resolve_dropout_mode(cfg) == "zero" else 0.0,
        seed=cfg.train.seed,
    )


def _collate() -> Any:
    from equiseg.data.dataset import collate_samples

    return collate_samples


def _epoch_loader(
    dataset: Any, cfg: EquisegConfig, info: DistInfo, epoch: int, skip_steps: int
) -> tuple[DataLoader[Any], int]:
    """This rank's batches of ``epoch`` from step ``skip_steps`` on, and the number of steps in a full epoch."""
    dataset.set_epoch(epoch)
    indices = epoch_indices(
        len(dataset),
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        epoch=epoch,
        rank=info.rank,
        world_size=info.world_size,
    )
    size = cfg.train.batch_size
    batches = [indices[i : i + size] for i in range(0, len(indices), size)]
    generator = torch.Generator().manual_seed(cfg.train.seed * 7_919 + epoch)  # workers' seeds; not the global RNG
    loader = DataLoader(
        dataset,
        batch_sampler=batches[skip_steps:],
        collate_fn=_collate(),
        num_workers=cfg.data.num_workers,
        pin_memory=info.device.type == "cuda",
        generator=generator,
        persistent_workers=False,
    )
    return loader, len(batches)


def _val_batches(cfg: EquisegConfig, manifest: Path, data_root: Path) -> list[dict[str, Any]]:
    dataset = _split_dataset(cfg, manifest, data_root, "val")
    if len(dataset) == 0:
        raise ValueError(f"{manifest} has no 'val' samples; set data.val_fraction > 0 and regenerate the data")
    loader = DataLoader(dataset, batch_size=cfg.robustness.batch_size, shuffle=False, collate_fn=_collate())
    return list(loader)


# ------------------------------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------------------------------


def _configure_determinism(cfg: EquisegConfig, device: torch.device) -> bool:
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


def _resume_path(resume: Path | bool | None, out_dir: Path) -> Path | None:
    if resume is None or resume is False:
        return None
    if resume is True:
        candidate = out_dir / LAST_CHECKPOINT
        if not candidate.is_file():
            logger.info("no %s to resume from in %s; starting fresh", LAST_CHECKPOINT, out_dir)
            return None
        return candidate
    return Path(resume)


def _robustness_metrics(
    model: nn.Module, val_batches: Sequence[Mapping[str, Any]], cfg: EquisegConfig, device: torch.device
) -> dict[str, float]:
    from equiseg.robustness import evaluate_robustness

    result = evaluate_robustness(
        model,
        val_batches,
        num_classes=cfg.data.num_classes,
        modalities=cfg.data.modalities,
        suite="quick",
        seed=cfg.robustness.seed,
        device=device,
        ignore_index=cfg.data.ignore_index,
        severities=cfg.robustness.severities,
        bootstrap_samples=0,
        absent_as_zero=cfg.robustness.miou_absent_as_zero,
        progress=False,
        missing=cfg.robustness.missing,  # the best epoch is chosen under the protocol the run will be scored with
    )
    return {k: float(v) for k, v in result.summary_metrics().items()}


def train(
    cfg: EquisegConfig,
    *,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    tracker: Tracker | None = None,
    trial: optuna.Trial | None = None,
    resume: Path | bool | None = None,
    log_model: bool = True,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``cfg.model.name`` on the ``train`` split of ``manifest``; write checkpoints under ``out_dir``.

    Args:
        cfg: resolved configuration.
        manifest: the dataset manifest (``manifest.parquet``).
        data_root: folder the manifest's relative paths start from.
        out_dir: receives ``config.yaml``, ``last.pt``, ``best.pt`` and ``metrics.json`` (final metrics, history).
        tracker: MLflow tracker; rank 0 logs into the active run (or opens one) the config, lineage, per-step and
            per-epoch metrics, curves, sample predictions and, with ``log_model``, the best model.
        trial: Optuna trial; the objective of every evaluated epoch is reported and a pruned trial raises
            ``optuna.TrialPruned`` after its checkpoint is written.
        resume: ``True`` resumes from ``out_dir/last.pt`` when it exists, a path resumes from that checkpoint.
        log_model: log the best checkpoint as an MLflow model (needs ``tracker``).
        show_progress: tqdm bars on rank 0.

    Raises:
        CheckpointError: the checkpoint to resume from is unreadable or belongs to another model.
        ValueError: empty splits or a global batch larger than the training split.
    """
    info = init_distributed(cfg.train.device)
    previous_det = _configure_determinism(cfg, info.device)
    out_dir = Path(out_dir)
    try:
        if tracker is not None and info.is_main:
            with tracker.start_run(run_name=f"train-{cfg.model.name}", reuse_active=True) as run_id:
                return _train(
                    cfg, manifest, data_root, out_dir, info, tracker, run_id, trial, resume, log_model, show_progress
                )
        return _train(cfg, manifest, data_root, out_dir, info, None, None, trial, resume, log_model, show_progress)
    finally:
        torch.use_deterministic_algorithms(previous_det)


def _train(
    cfg: EquisegConfig,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    info: DistInfo,
    tracker: Tracker | None,
    run_id: str | None,
    trial: optuna.Trial | None,
    resume: Path | bool | None,
    log_model: bool,
    show_progress: bool,
) -> TrainResult:
    tc = cfg.train
    device = info.device
    last_path, best_path = out_dir / LAST_CHECKPOINT, out_dir / BEST_CHECKPOINT
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")

    model = build_model(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, tc.lr, tc.weight_decay)
    progress = _Progress()

    checkpoint_path = _resume_path(resume, out_dir)
    rng_state: Mapping[str, Any] | None = None
    if checkpoint_path is not None:
        ckpt = load_checkpoint(checkpoint_path, map_location="cpu")
        if ckpt["model_name"] != cfg.model.name:
            raise CheckpointError(
                f"{checkpoint_path} holds a {ckpt['model_name']} but the config trains {cfg.model.name}; resume "
                f"with the checkpoint's config ({checkpoint_path.parent / 'config.yaml'}) or start a fresh out_dir"
            )
        try:
            unwrap_model(model).load_state_dict(ckpt["model"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{checkpoint_path} does not fit {cfg.model.name} as configured: {exc}") from exc
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        progress = _Progress(
            epoch=int(ckpt["epoch"]),
            epoch_step=int(ckpt["epoch_step"]),
            global_step=int(ckpt["global_step"]),
            best_metric=ckpt.get("best_metric"),
            best_epoch=int(ckpt.get("metrics", {}).get("best_epoch", -1)),
            history=[dict(h) for h in ckpt.get("history", [])],
            epoch_loss_sum=[float(v) for v in ckpt.get("partial_epoch_loss") or [0.0, 0.0, 0.0]],
        )
        rng_state = ckpt.get("rng") or None
        logger.info("resumed from %s at epoch %d step %d", checkpoint_path, progress.epoch, progress.epoch_step)

    train_model: nn.Module = model
    if info.distributed:
        if device.type == "cuda":  # one set of batch statistics over all ranks (SyncBatchNorm is CUDA-only)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=resolve_dropout_mode(cfg) == "drop",  # a dropped modality's branch gets no grad
        )

    train_set = _split_dataset(cfg, manifest, data_root, "train")
    val_batches = _val_batches(cfg, manifest, data_root) if info.is_main else []

    if tracker is not None and info.is_main:
        tracker.log_config(cfg)
        tracker.set_tags({"equiseg.model": cfg.model.name, "equiseg.world_size": info.world_size})
        tracker.set_lineage_tags()

    config_dict = config_to_dict(cfg)
    last_metrics: dict[str, float] = dict(progress.history[-1]) if progress.history else {}

    def write_checkpoint(path: Path, *, epoch: int, epoch_step: int, metrics: Mapping[str, float]) -> None:
        save_checkpoint(
            path,
            model=model,
            optimizer=optimizer,
            config=config_dict,
            epoch=epoch,
            epoch_step=epoch_step,
            global_step=progress.global_step,
            best_metric=progress.best_metric,
            metrics={**metrics, "best_epoch": float(progress.best_epoch)},
            history=progress.history,
            partial_epoch_loss=progress.epoch_loss_sum if epoch_step > 0 else None,
        )

    if rng_state is not None:
        restore_rng_state(rng_state)  # last, so nothing above shifts the restored streams
    for epoch in range(progress.epoch, tc.epochs):
        skip = progress.epoch_step if epoch == progress.epoch else 0
        loader, steps_per_epoch = _epoch_loader(train_set, cfg, info, epoch, skip)

        def on_step(
            epoch_step: int,
            global_step: int,
            step_metrics: dict[str, float],
            _epoch: int = epoch,
            _steps: int = steps_per_epoch,
            _metrics: dict[str, float] = last_metrics,
        ) -> None:
            if tracker is not None and info.is_main and (global_step % 10 == 0 or epoch_step == 1):
                tracker.log_metrics(step_metrics, step=global_step)
            every = tc.checkpoint_every_steps
            if every > 0 and global_step % every == 0 and epoch_step < _steps:
                running = progress.running_loss_sum
                if running is not None:  # collective on every rank: the checkpoint keeps the global partial sums
                    progress.epoch_loss_sum = all_reduce_sum(running.clone(), info).tolist()
                if info.is_main:
                    write_checkpoint(last_path, epoch=_epoch, epoch_step=epoch_step, metrics=_metrics)

        epoch_metrics = train_one_epoch(
            train_model,
            loader,
            optimizer,
            cfg,
            epoch=epoch,
            start_step=skip,
            steps_per_epoch=steps_per_epoch,
            progress=progress,
            info=info,
            on_step=on_step,
            show_progress=show_progress,
        )
        progress.epoch, progress.epoch_step, progress.epoch_loss_sum = epoch + 1, 0, [0.0, 0.0, 0.0]
        metrics: dict[str, float] = {"epoch": float(epoch + 1), **epoch_metrics}
        prune = False
        if info.is_main:
            metrics.update(
                evaluate(
                    model,
                    val_batches,
                    num_classes=cfg.data.num_classes,
                    device=device,
                    ignore_index=cfg.data.ignore_index,
                    absent_as_zero=cfg.robustness.miou_absent_as_zero,
                )
            )
            robust_epoch = (epoch + 1) % max(1, tc.eval_robustness_every) == 0 or epoch + 1 == tc.epochs
            if robust_epoch:
                metrics.update(_robustness_metrics(model, val_batches, cfg, device))
                metrics["objective"] = robustness_objective(metrics)
            progress.history.append(metrics)
            last_metrics = metrics
            if "objective" in metrics and (progress.best_metric is None or metrics["objective"] > progress.best_metric):
                progress.best_metric, progress.best_epoch = metrics["objective"], epoch + 1
                write_checkpoint(best_path, epoch=epoch + 1, epoch_step=0, metrics=metrics)
            write_checkpoint(last_path, epoch=epoch + 1, epoch_step=0, metrics=metrics)
            logger.info(
                "epoch %d/%d: loss %.4f, val mIoU %.2f%s",
                epoch + 1,
                tc.epochs,
                metrics["train_loss"],
                metrics["val_miou"],
                f", objective {metrics['objective']:.2f}" if "objective" in metrics else "",
            )
            if tracker is not None:
                tracker.log_metrics(metrics, step=epoch + 1)
            if trial is not None and "objective" in metrics:
                trial.report(metrics["objective"], step=epoch + 1)
                prune = trial.should_prune()
        barrier(info)
        if prune:
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (objective {metrics['objective']:.2f})")

    result_metrics = dict(last_metrics)
    if progress.best_metric is not None:
        result_metrics["best_objective"] = float(progress.best_metric)
        result_metrics["best_epoch"] = float(progress.best_epoch)
    if info.is_main:
        summary = {"metrics": result_metrics, "history": progress.history, "epochs_run": progress.epoch}
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    model_uri = None
    if tracker is not None and info.is_main:
        tracker.log_metrics({k: v for k, v in result_metrics.items() if k in ("best_objective", "best_epoch")})
        tracker.log_curves(progress.history)
        if val_batches:
            _log_predictions(tracker, model, val_batches[0], device)
        tracker.log_artifact(out_dir / "config.yaml")
        if log_model and best_path.is_file():
            model_uri = tracker.log_model(best_path, name="model")
            tracker.set_tags({"equiseg.model_uri": model_uri})
    barrier(info)
    return TrainResult(
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        metrics=result_metrics,
        epochs_run=progress.epoch,
        run_id=run_id,
        model_uri=model_uri,
        history=list(progress.history),
    )


@torch.no_grad()
def _log_predictions(tracker: Tracker, model: nn.Module, batch: Mapping[str, Any], device: torch.device) -> None:
    was_training = model.training
    model.eval()
    inputs, labels = _batches_to_device(batch, device, channels_last=False)
    predictions = model(inputs).logits.argmax(1)
    model.train(was_training)
    tracker.log_sample_predictions(
        {k: v.cpu() for k, v in inputs.items()},
        labels.cpu(),
        predictions.cpu(),
        artifact_file="figures/predictions.png",
    )
