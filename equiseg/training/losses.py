"""Segmentation losses: plain cross-entropy and online hard example mining (OHEM) cross-entropy.

OHEM as CMX / CMNeXt train with it (the EQUISeg recipe follows them, an inference from arXiv 2509.24505): compute
the per-pixel CE, keep the pixels whose ground-truth probability is below ``thresh`` (i.e. loss above
``-log(thresh)``), but never fewer than ``min_kept`` of the hardest valid pixels, and average over the kept ones.
Ignored pixels (label ``ignore_index``) never count.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ohem_cross_entropy", "segmentation_loss"]


def ohem_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    thresh: float = 0.7,
    min_kept_fraction: float = 1.0 / 16,
    ignore_index: int = 255,
) -> Tensor:
    """OHEM cross-entropy over a batch.

    Args:
        logits: ``(B, K, H, W)`` class scores.
        labels: ``(B, H, W)`` int64 labels.
        thresh: probability threshold; pixels predicted with GT probability below it are "hard".
        min_kept_fraction: at least this share of the valid pixels (and at least one) is kept, hardest first.
        ignore_index: label that is not scored.

    Returns:
        Scalar loss; 0 (with a gradient path) when the batch has no valid pixel.
    """
    if not 0.0 < thresh <= 1.0:
        raise ValueError(f"train.ohem_thresh must be in (0, 1], got {thresh}")
    # Written without data-dependent shapes or host reads (no boolean indexing, no ``.item()``), so a CUDA step never
    # waits on the host and ``torch.compile`` keeps it in one graph: every branch is computed and chosen by ``where``.
    pixel_loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none").flatten()
    valid = labels.flatten() != ignore_index
    n_valid = valid.sum()
    min_kept = torch.clamp(torch.floor(n_valid * min_kept_fraction), min=1.0)
    hard = valid & (pixel_loss > -math.log(thresh))
    n_hard = hard.sum()
    hard_mean = (pixel_loss * hard).sum() / n_hard.clamp(min=1)
    # the ``min_kept`` hardest valid pixels: sort descending (ignored pixels last) and average the first ``min_kept``
    ranked = torch.sort(torch.where(valid, pixel_loss, -1.0), descending=True).values
    first = torch.arange(ranked.numel(), device=ranked.device) < min_kept
    topk_mean = (ranked * first).sum() / min_kept
    loss = torch.where(n_hard >= min_kept, hard_mean, topk_mean)
    return torch.where(n_valid > 0, loss, loss * 0.0)


def segmentation_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    kind: Literal["ce", "ohem"] = "ce",
    ignore_index: int = 255,
    ohem_thresh: float = 0.7,
) -> Tensor:
    """Main segmentation loss selected by ``train.loss`` (``ce`` or ``ohem``); computed in fp32."""
    if kind == "ce":
        # sum / count instead of a host-side "any valid pixel?" check: 0 (with a gradient path) when none is
        pixel_loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none")
        count = (labels != ignore_index).sum()
        return pixel_loss.sum() / count.clamp(min=1)
    if kind == "ohem":
        return ohem_cross_entropy(logits, labels, thresh=ohem_thresh, ignore_index=ignore_index)
    raise ValueError(f"unknown train.loss {kind!r}; use 'ce' or 'ohem'")
