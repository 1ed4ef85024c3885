"""SegFormer's all-MLP decoder (Xie et al., arXiv 2105.15203)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SegFormerHead"]


class SegFormerHead(nn.Module):
    """All-MLP head: per-stage linear to ``decoder_dim``, upsample to 1/4, concat, 1x1 fuse, classify.

    Input: four maps ``(B, C_i, H/2^(i+2), W/2^(i+2))``; output ``(B, K, H/4, W/4)`` logits.

    The forward pass computes the same function in a cheaper order (docs/training.md, "Decoder"): the fuse
    convolution is linear and acts per pixel, and bilinear upsampling is linear and acts per channel, so the two
    commute. Each stage's projection and its slice of the fuse weight are composed into one ``C_i -> D`` map applied
    at the stage's own resolution, and the upsampled results are summed; the ``4D -> D`` convolution at 1/4
    resolution and the ``4D``-channel concatenation disappear. Parameters and state-dict keys are those of the
    textbook order (:meth:`forward_reference`), so checkpoints load either way.
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
        fuse_conv = cast(nn.Conv2d, self.fuse[0])
        dim = fuse_conv.out_channels
        fuse_weight = fuse_conv.weight.flatten(1)  # (D, 4D): the concatenation order is deepest stage first
        slots = len(self.project)
        fused: Tensor | None = None
        for index, (module, feat) in enumerate(zip(self.project, feats, strict=True)):
            proj = cast(nn.Conv2d, module)
            slot = slots - 1 - index
            block = fuse_weight[:, slot * dim : (slot + 1) * dim]  # (D, D)
            weight = (block @ proj.weight.flatten(1)).reshape(dim, -1, 1, 1)  # (D, C_i, 1, 1)
            bias = block @ proj.bias if proj.bias is not None else None
            y = F.conv2d(feat, weight, bias)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = y if fused is None else fused + y
        assert fused is not None
        fused = self.fuse[2](self.fuse[1](fused))  # BatchNorm, ReLU
        out: Tensor = self.classify(self.dropout(fused))
        return out

    def forward_reference(self, feats: Sequence[Tensor]) -> Tensor:
        """The textbook order (project, upsample, concatenate, fuse): the same function as :meth:`forward`."""
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
