"""What the loop measures after an epoch: clean validation, a robustness suite and the selection objective.

**Model selection.** After every ``train.eval_robustness_every``-th epoch (and the last) the model is scored on the
clean validation split and on the robustness suite ``train.val_suite`` (*quick*, or *emm*: only the slices the
objective reads, so the same checkpoint at a fraction of the cost); the best checkpoint maximises

    objective = (clean_miou + emm_avg) / 2        (mIoU points)

the mean of clean mIoU and the EMM average (expected mIoU over missing-modality patterns). A model that is good on
clean data but collapses when a sensor drops out, or the reverse, scores lower than a balanced one; the same value
is the Optuna objective (:mod:`equiseg.tuning`), so tuning and checkpoint selection pursue one goal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from equiseg.config import EquisegConfig
from equiseg.robustness.metrics import ConfusionMatrix
from equiseg.robustness.runner import evaluate_robustness
from equiseg.training.epoch import batch_to_device
from equiseg.training.losses import segmentation_loss

__all__ = ["robustness_metrics", "robustness_objective", "validation_metrics"]


def robustness_objective(metrics: Mapping[str, float]) -> float:
    """``(clean_miou + emm_avg) / 2``; clean mIoU alone when the EMM average was not measured."""
    clean = float(metrics.get("clean_miou", metrics.get("val_miou", float("nan"))))
    emm = metrics.get("emm_avg")
    return clean if emm is None else 0.5 * (clean + float(emm))


@torch.no_grad()
def validation_metrics(
    model: nn.Module,
    batches: Sequence[Mapping[str, Any]],
    *,
    num_classes: int,
    device: torch.device,
    ignore_index: int = 255,
    absent_as_zero: bool = True,
) -> dict[str, float]:
    """Clean validation: ``val_loss`` (CE) and dataset-level ``val_miou`` / ``val_pixel_acc`` (points)."""
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, keep_per_image=False)
    loss_total, count = 0.0, 0
    for batch in batches:
        inputs, labels = batch_to_device(batch, device, channels_last=device.type == "cuda")
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


def robustness_metrics(
    model: nn.Module, val_batches: Sequence[Mapping[str, Any]], cfg: EquisegConfig, device: torch.device
) -> dict[str, float]:
    """Summary metrics of the ``train.val_suite`` robustness suite on the validation batches (no bootstrap)."""
    result = evaluate_robustness(
        model,
        val_batches,
        num_classes=cfg.data.num_classes,
        modalities=cfg.data.modalities,
        suite=cfg.train.val_suite,
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
