"""One training epoch and its building blocks: model and optimiser, modality dropout, :func:`train_one_epoch`.

Recipe (follows SegFormer / CMNeXt practice, an inference: the EQUISeg paper, arXiv 2509.24505, publishes no
training recipe in its abstract): AdamW (no weight decay on norms and biases), linear warm-up + poly decay
(:mod:`equiseg.training.schedule`), CE or OHEM-CE plus the Self-guided Module's auxiliary losses
(``SegmentationOutput.aux_losses``, already weighted by the model), per-sample modality dropout (never every
modality), gradient clipping; bf16 autocast and ``channels_last`` on CUDA, fp32 on CPU. With ``train.compile`` the
forward and the losses (:func:`forward_loss`) run through ``torch.compile``; the step reads nothing back to the host
on CUDA except what a caller's ``on_step`` asks for (docs/training.md, "Speed").
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from equiseg.config import EquisegConfig
from equiseg.models import FAMILIES, create_model, model_family, supports_missing_modalities
from equiseg.training.distributed import DistInfo, all_reduce_sum
from equiseg.training.losses import segmentation_loss
from equiseg.training.schedule import lr_at, warmup_steps_for

__all__ = [
    "Progress",
    "batch_to_device",
    "build_model",
    "build_optimizer",
    "drop_modalities",
    "forward_loss",
    "resolve_dropout_mode",
    "train_one_epoch",
]

#: ``on_step(epoch_step, global_step, step_metrics)``, called after every optimiser step.
StepCallback = Callable[[int, int, dict[str, float]], None]


@dataclass
class Progress:
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


def build_model(cfg: EquisegConfig) -> nn.Module:
    """``create_model`` from the ``model:`` and ``data:`` sections."""
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


def batch_to_device(
    batch: Mapping[str, Any], device: torch.device, channels_last: bool
) -> tuple[dict[str, Tensor], Tensor]:
    """``(inputs, labels)`` of a collated batch on ``device`` (``channels_last`` images on request)."""
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


def forward_loss(
    model: nn.Module, inputs: Mapping[str, Tensor], labels: Tensor, cfg: EquisegConfig, use_amp: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Forward with the model's auxiliary losses and the main loss: ``(total, main, aux)`` scalars on the device.

    Free of host reads and data-dependent shapes: ``torch.compile`` captures it whole (:func:`compiled_forward_loss`).
    """
    with _autocast(labels.device, use_amp):
        output = model(inputs, labels)
    tc = cfg.train
    main_loss = segmentation_loss(
        output.logits, labels, kind=tc.loss, ignore_index=cfg.data.ignore_index, ohem_thresh=tc.ohem_thresh
    )
    aux = sum((v.float() for v in output.aux_losses.values()), torch.zeros((), device=labels.device))
    return main_loss + aux, main_loss, aux


@functools.cache
def compiled_forward_loss() -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """:func:`forward_loss` through ``torch.compile`` (one wrapper per process; dynamo caches per input signature)."""
    compiled: Callable[..., tuple[Tensor, Tensor, Tensor]] = torch.compile(forward_loss)
    return compiled


def _raise_if_not_finite(loss: Tensor, cfg: EquisegConfig, epoch: int, step: int) -> None:
    value = float(loss.detach())
    if not np.isfinite(value):
        raise FloatingPointError(
            f"non-finite loss {value} at epoch {epoch + 1}, step {step}; lower train.lr "
            f"(now {cfg.train.lr}) or enable train.grad_clip"
        )


def _lr(cfg: EquisegConfig, global_step: int, steps_per_epoch: int) -> float:
    tc = cfg.train
    return lr_at(
        global_step,
        total_steps=max(1, tc.epochs * steps_per_epoch),
        base_lr=tc.lr,
        warmup_steps=warmup_steps_for(tc.warmup_epochs, steps_per_epoch),
        warmup_ratio=tc.warmup_ratio,
        power=tc.poly_power,
    )


def train_one_epoch(
    model: nn.Module,
    loader: Iterator[Mapping[str, Any]] | DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    cfg: EquisegConfig,
    *,
    epoch: int,
    start_step: int,
    steps_per_epoch: int,
    progress: Progress,
    info: DistInfo,
    on_step: StepCallback | None = None,
    show_progress: bool = True,
) -> dict[str, float]:
    """Train over ``loader`` (the epoch's batches from ``start_step`` on); returns the epoch's reduced metrics.

    ``on_step(epoch_step, global_step, step_metrics)`` runs after every optimiser step (checkpoints, logging).
    """
    tc = cfg.train
    device = info.device
    use_amp = tc.amp and device.type == "cuda"
    drop_at_step = resolve_dropout_mode(cfg) == "drop" and tc.modality_dropout > 0.0
    model.train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # a no-op after the first epoch
    step_loss = compiled_forward_loss() if tc.compile else forward_loss
    lagged = device.type == "cuda"  # check finiteness one step late: no host sync inside the step
    previous: Tensor | None = None
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
        lr = _lr(cfg, progress.global_step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, labels = batch_to_device(batch, device, channels_last=device.type == "cuda")
        if drop_at_step:
            inputs = drop_modalities(inputs, tc.modality_dropout, (tc.seed, epoch, step))
        loss, main_loss, aux = step_loss(model, inputs, labels, cfg, use_amp)
        if not lagged:  # on CPU reading the loss costs nothing: stop before a non-finite loss reaches the weights
            _raise_if_not_finite(loss, cfg, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        detached = torch.stack([loss.detach(), main_loss.detach(), aux.detach()]).double()
        loss_sum += detached
        if lagged and previous is not None:
            # on CUDA the previous step's loss is ready by now (this step's kernels are queued behind it): reading
            # it does not drain the queue, unlike reading this step's loss
            _raise_if_not_finite(previous, cfg, epoch, step - 1)
        shown = previous if lagged else detached[0]
        previous = detached[0]
        step += 1
        progress.global_step += 1
        progress.epoch_step = step
        images += labels.shape[0] * info.world_size
        elapsed = max(time.perf_counter() - started, 1e-9)
        if info.is_main and not bar.disable:
            bar.update(1)
            if shown is not None:
                bar.set_postfix(loss=f"{float(shown):.3f}", lr=f"{lr:.2e}", img_s=f"{images / elapsed:.1f}")
        if on_step is not None:  # the callback's float is a host read: one sync per step when a callback is given
            on_step(step, progress.global_step, {"train_step_loss": float(detached[0]), "lr": lr})
    if previous is not None:
        _raise_if_not_finite(previous, cfg, epoch, step - 1)
    bar.close()
    all_reduce_sum(loss_sum, info)
    denom = max(1, step) * info.world_size
    elapsed = max(time.perf_counter() - started, 1e-9)
    return {
        "train_loss": float(loss_sum[0]) / denom,
        "train_main_loss": float(loss_sum[1]) / denom,
        "train_aux_loss": float(loss_sum[2]) / denom,
        "lr": _lr(cfg, max(0, progress.global_step - 1), steps_per_epoch),
        "train_images_per_s": images / elapsed,
    }
