"""Hierarchical selection: per-position modality weights at every stage (EQUISeg, arXiv 2509.24505, abstract).

The paper names "hierarchical selection" inside the CMTB and nothing more. Our reading (inferred, docs/model.md):
a selection that can use RGB for lanes and depth for plinths in the same image must weigh the modalities per
*position*, not per image. At every stage each present modality's feature map is scored against the aggregate
(mean) of all present ones at every position: a modality-agnostic 1x1 scorer on ``[feature, aggregate]`` plus a
learned scale x per-position cosine similarity (after MAGIC/MAGIC++'s similarity ranking, arXiv 2407.11344,
2412.16876). The hierarchy: the finer stage's score map, average-pooled to this stage's size, is added to this
stage's score. An optional prior (the SGM's per-position contribution estimates, :mod:`equiseg.models.sgm`) enters
as ``gain x log(prior)``. A softmax over the present modalities at each position weights the fused map for the
decoder. The scorer is shared by all modalities, so none is privileged and any subset can be fused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StageSelection"]


class StageSelection(nn.Module):
    """Score present modalities per position against their aggregate and fuse them with softmax weights."""

    def __init__(self, dim: int, hidden: int | None = None, *, use_prior: bool = False) -> None:
        super().__init__()
        hidden = hidden or max(dim // 4, 8)
        # no bias on the score: a constant shared by every modality cancels in the softmax and never learns
        self.scorer = nn.Sequential(nn.Conv2d(2 * dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 1, 1, bias=False))
        self.similarity_scale = nn.Parameter(torch.tensor(1.0))
        # only where a prior arrives (an unused parameter would get no gradient)
        self.prior_gain = nn.Parameter(torch.tensor(1.0)) if use_prior else None

    def forward(
        self, feats: dict[str, Tensor], previous_logits: Tensor | None, prior: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Fuse ``{modality: (B, C, h, w)}``.

        Args:
            feats: the present modalities' features of this stage.
            previous_logits: the finer stage's score map ``(B, N, h', w')`` (None at stage 1).
            prior: per-position modality shares ``(B, N, h'', w'')`` (rows sum to 1), resized here; None for none.

        Returns:
            fused ``(B, C, h, w)``, weights ``(B, N, h, w)`` (sum to 1 over N at every position) and the score map
            ``(B, N, h, w)`` for the next stage (without the prior, which each stage adds once).
        """
        stacked = torch.stack(list(feats.values()), dim=1)  # (B, N, C, h, w)
        batch, count, dim, height, width = stacked.shape
        aggregate = stacked.mean(dim=1, keepdim=True).expand_as(stacked)  # (B, N, C, h, w)
        similarity = F.cosine_similarity(stacked, aggregate, dim=2)  # (B, N, h, w)
        pairs = torch.cat([stacked, aggregate], dim=2).reshape(batch * count, 2 * dim, height, width)
        logits = self.scorer(pairs).reshape(batch, count, height, width) + self.similarity_scale * similarity
        if previous_logits is not None:
            logits = logits + F.adaptive_avg_pool2d(previous_logits, (height, width))
        scores = logits
        if prior is not None and self.prior_gain is not None:
            pooled = F.adaptive_avg_pool2d(prior, (height, width))
            scores = logits + self.prior_gain * pooled.clamp(min=1e-4).log()
        weights = scores.softmax(dim=1)  # (B, N, h, w)
        fused = (stacked * weights[:, :, None]).sum(dim=1)  # (B, C, h, w)
        return fused, weights, logits
