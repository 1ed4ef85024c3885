"""SegFormer's all-MLP decoder (Xie et al., arXiv 2105.15203)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SegFormerHead"]


class SegFormerHead(nn.Module):
    """All-MLP head: per-stage linear to ``decoder_dim``, upsample to 1/4, concat, 1x1 fuse, classify.

    Input: four maps ``(B, C_i, H/2^(i+2), W/2^(i+2))``; output ``(B, K, H/4, W/4)`` logits.
    """

    def __init__(self, in_dims: Sequence[int], decoder_dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        # A 1x1 conv is the per-pixel linear layer of the all-MLP head without the reshape round trip.
        self.project = nn.ModuleList(nn.Conv2d(dim, decoder_dim, 1) for dim in in_dims)
        self.fuse = nn.Sequential(
            nn.Conv2d(decoder_dim * len(in_dims), decoder_dim, 1, bias=False),
            nn.BatchNorm2d(decoder_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classify = nn.Conv2d(decoder_dim, num_classes, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]
        projected = []
        for proj, feat in zip(self.project, feats, strict=True):
            y = proj(feat)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            projected.append(y)
        fused = self.fuse(torch.cat(projected[::-1], dim=1))  # (B, 4*D, H/4, W/4) -> (B, D, H/4, W/4)
        out: Tensor = self.classify(self.dropout(fused))
        return out
