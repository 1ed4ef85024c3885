"""Hierarchical selection: input-dependent, per-stage modality weights (EQUISeg, arXiv 2509.24505, abstract).

The paper names "hierarchical selection" inside the CMTB and nothing more. Our reading, after MAGIC/MAGIC++'s
similarity ranking (arXiv 2407.11344, 2412.16876): at every stage each present modality's pooled feature is scored
against the aggregate of all present modalities (cosine similarity plus a small modality-agnostic MLP), the score is
added to the previous, finer stage's score (the hierarchy), and a softmax over the present modalities gives the
weights of a weighted sum that goes to the decoder. The scorer is shared by all modalities, so none is privileged and
any subset can be fused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StageSelection"]


class StageSelection(nn.Module):
    """Score present modalities against their aggregate and fuse them with softmax weights."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(dim // 4, 8)
        # no bias on the score: a constant shared by every modality cancels in the softmax and never learns
        self.scorer = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1, bias=False))
        self.similarity_scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, feats: dict[str, Tensor], previous_logits: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Fuse ``{modality: (B, C, H, W)}``.

        Returns:
            fused ``(B, C, H, W)``, weights ``(B, N_present)`` (rows sum to 1) and logits ``(B, N_present)`` for the
            next stage.
        """
        stacked = torch.stack(list(feats.values()), dim=1)  # (B, N, C, H, W)
        pooled = stacked.mean(dim=(3, 4))  # (B, N, C)
        aggregate = pooled.mean(dim=1, keepdim=True).expand_as(pooled)  # (B, N, C)
        similarity = F.cosine_similarity(pooled, aggregate, dim=-1)  # (B, N)
        logits = self.scorer(torch.cat([pooled, aggregate], dim=-1)).squeeze(-1) + self.similarity_scale * similarity
        if previous_logits is not None:
            logits = logits + previous_logits
        weights = logits.softmax(dim=1)  # (B, N)
        fused = (stacked * weights[:, :, None, None, None]).sum(dim=1)  # (B, C, H, W)
        return fused, weights, logits
