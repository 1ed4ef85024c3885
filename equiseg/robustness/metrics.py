"""Segmentation metrics with the field's conventions (docs/robustness.md; DELIVER's ``semseg/metrics.py``).

The dataset-level confusion matrix ``hist[t, p]`` counts pixels with target ``t`` and arg-max prediction ``p``,
skipping the ignore index, accumulated over the whole split (not averaged per image). From it::

    IoU_c = hist[c, c] / (sum_p hist[c, p] + sum_t hist[t, c] - hist[c, c])
    mIoU  = 100 * mean over ALL classes

**NaN convention** (a class absent from both target and prediction has 0/0): with ``absent_as_zero=True``
(DeLiVER / CMNeXt / the robustness benchmark) it counts as IoU 0; with ``False`` it is left out of the mean
(mmsegmentation's ``nanmean``). Champion and challenger must use the same convention.

**Per-image mIoU** (kept per slice, in sample order, for the gate's paired bootstrap) always averages over the
classes present in that image's target or prediction: a 64x64 crop rarely holds every class, so counting absent
classes as 0 would cap it arbitrarily. An image without any valid pixel and without predictions scores NaN.

All mIoU values are in points (0-100), like the papers and the gate thresholds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "ConfusionMatrix",
    "bootstrap_miou_ci",
    "confusion_matrix",
    "miou",
    "per_class_iou",
    "per_image_confusion",
    "per_image_miou",
]


def per_image_confusion(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """Confusion matrix of every image in a batch.

    Args:
        pred: ``(B, H, W)`` integer class predictions (arg-max of the logits).
        target: ``(B, H, W)`` integer labels; ``ignore_index`` pixels are skipped.
        num_classes: number of classes ``K``; labels outside ``[0, K)`` other than the ignore index raise.
        ignore_index: label value that is not scored.

    Returns:
        ``(B, K, K)`` int64 tensor on the inputs' device, ``hist[b, t, p]``.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(
            f"pred and target must both be (B, H, W) with the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}; resize the logits to the label size before the arg-max"
        )
    batch = target.shape[0]
    k = num_classes
    target = target.long()
    pred = pred.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= k))
    if bool(bad.any()):
        found = sorted({int(v) for v in target[bad].unique().tolist()})
        raise ValueError(
            f"labels {found[:10]} are outside [0, {k}) and not the ignore index {ignore_index}; "
            "check num_classes or the dataset's label mapping"
        )
    pred = pred.clamp(0, k - 1)
    image = torch.arange(batch, device=target.device).view(batch, 1, 1).expand_as(target)
    flat = (image * k * k + target * k + pred)[valid]
    counts = torch.bincount(flat, minlength=batch * k * k)
    return counts.view(batch, k, k)


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """Dataset-level ``(K, K)`` int64 confusion matrix of a batch (sum of :func:`per_image_confusion`)."""
    return per_image_confusion(pred, target, num_classes, ignore_index).sum(dim=0)


def _as_numpy(hist: torch.Tensor | NDArray[np.integer] | NDArray[np.floating]) -> NDArray[np.float64]:
    if isinstance(hist, torch.Tensor):
        return hist.detach().cpu().double().numpy()
    return np.asarray(hist, dtype=np.float64)


def per_class_iou(hist: torch.Tensor | NDArray[np.integer] | NDArray[np.floating]) -> NDArray[np.float64]:
    """IoU of every class (0-1) from a ``(..., K, K)`` confusion matrix; NaN where the class is absent everywhere."""
    h = _as_numpy(hist)
    tp = np.diagonal(h, axis1=-2, axis2=-1)
    union = h.sum(axis=-1) + h.sum(axis=-2) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def miou(
    hist: torch.Tensor | NDArray[np.integer] | NDArray[np.floating], absent_as_zero: bool = True
) -> float | NDArray[np.float64]:
    """Mean IoU in points (0-100) of a ``(K, K)`` confusion matrix, or an array of them for ``(..., K, K)``.

    Args:
        hist: confusion matrix ``hist[t, p]`` (a stack of them is accepted, e.g. bootstrap resamples).
        absent_as_zero: ``True`` counts a class absent from both target and prediction as IoU 0 (DeLiVER
            convention); ``False`` leaves it out of the mean (NaN if no class is present at all).
    """
    iou = per_class_iou(hist)
    if absent_as_zero:
        values = np.nan_to_num(iou, nan=0.0).mean(axis=-1) * 100.0
    else:
        present = ~np.isnan(iou)
        count = present.sum(axis=-1)
        total = np.where(present, iou, 0.0).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(count > 0, total / np.maximum(count, 1), np.nan) * 100.0
    if np.ndim(values) == 0:
        return float(values)
    return np.asarray(values, dtype=np.float64)


def per_image_miou(per_image_hist: torch.Tensor | NDArray[np.integer]) -> list[float]:
    """mIoU in points of each image of a ``(N, K, K)`` stack, over the classes present in that image (see module)."""
    values = miou(per_image_hist, absent_as_zero=False)
    return [float(v) for v in np.atleast_1d(values)]


class ConfusionMatrix:
    """Running dataset-level confusion matrix that also keeps every image's own matrix, in order.

    Example::

        cm = ConfusionMatrix(num_classes=8)
        for batch in loader:
            cm.update(model(batch["inputs"]).logits.argmax(1), batch["label"])
        cm.miou(), cm.per_class_iou(), cm.per_image_miou()
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, keep_per_image: bool = True) -> None:
        """Create an empty matrix for ``num_classes`` classes; ``ignore_index`` pixels are never counted."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.keep_per_image = keep_per_image
        self.hist = np.zeros((num_classes, num_classes), dtype=np.int64)
        self._per_image: list[NDArray[np.int64]] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of ``(B, H, W)`` predictions and labels."""
        batch_hist = per_image_confusion(pred, target, self.num_classes, self.ignore_index).cpu().numpy()
        self.hist += batch_hist.sum(axis=0)
        if self.keep_per_image:
            self._per_image.extend(batch_hist)

    @property
    def per_image_hist(self) -> NDArray[np.int64]:
        """``(N, K, K)`` matrices of every image seen, in update order."""
        if not self._per_image:
            return np.zeros((0, self.num_classes, self.num_classes), dtype=np.int64)
        return np.stack(self._per_image)

    def miou(self, absent_as_zero: bool = True) -> float:
        """Dataset-level mIoU in points (see :func:`miou`)."""
        return float(miou(self.hist, absent_as_zero))

    def per_class_iou(self) -> NDArray[np.float64]:
        """Per-class IoU (0-1, NaN for classes absent from target and prediction)."""
        return per_class_iou(self.hist)

    def per_image_miou(self) -> list[float]:
        """Per-image mIoU in points, in update order (see module docstring for the convention)."""
        return per_image_miou(self.per_image_hist)


def bootstrap_miou_ci(
    per_image_hist: NDArray[np.integer],
    *,
    samples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    absent_as_zero: bool = True,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the dataset-level mIoU, resampling images with replacement.

    Each resample sums the chosen images' confusion matrices and recomputes the mIoU with the same convention as the
    point estimate, so the interval is about the metric actually reported (not an average of per-image scores).

    Returns:
        ``(low, high)`` in points; ``(nan, nan)`` with fewer than two images or ``samples == 0``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"ci level must be in (0, 1), got {level}")
    n = len(per_image_hist)
    if n < 2 or samples <= 0:
        return (math.nan, math.nan)
    k = per_image_hist.shape[-1]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)  # (S, N)
    flat = per_image_hist.reshape(n, k * k).astype(np.float64)
    resampled = (counts @ flat).reshape(samples, k, k)
    values = np.asarray(miou(resampled, absent_as_zero), dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return (float(low), float(high))
