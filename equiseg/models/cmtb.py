"""Cross-modal part of EQUISeg's Cross-modal Transformer Block (CMTB), arXiv 2509.24505 (abstract).

The paper states a four-stage CMTB that encodes every modality equally. Third-party summaries add that it puts
cross-attention beside SegFormer's efficient self-attention, with one modality as primary and the other N-1 as
auxiliary, and a residual connection. Our reading (docs/model.md): after each MiT stage (spatial-reduction
self-attention + Mix-FFN within each modality, timm ``pvt_v2``) every present modality in turn is the query and the
other present modalities give keys/values (spatially reduced like SegFormer's attention), added back residually,
followed by a Mix-FFN. No modality is privileged: each is primary for its own branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, trunc_normal_
from timm.models.pvt_v2 import MlpWithDepthwiseConv
from torch import Tensor, nn

__all__ = ["CrossModalBlock", "CrossModalUnit"]


class CrossModalUnit(nn.Module):
    """Projections of one modality in a CMTB: its queries, its (reduced) keys/values, output proj, Mix-FFN."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, drop_path: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm_q = LayerNorm(dim)
        self.norm_kv = LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.sr: nn.Module = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else nn.Identity()
        self.norm_sr: nn.Module = LayerNorm(dim) if sr_ratio > 1 else nn.Identity()
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop_path1: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm_ffn = LayerNorm(dim)
        self.ffn = MlpWithDepthwiseConv(dim, 4 * dim)
        self.drop_path2: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        # Start close to identity so that stacking fusion on top of the stages does not disturb early training.
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        for module in (self.q, self.kv):
            trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W)`` -> keys and values ``(B, heads, H*W / sr^2, C / heads)`` each."""
        batch, dim, _, _ = x.shape
        tokens = self.norm_kv(x.permute(0, 2, 3, 1))  # (B, H, W, C)
        reduced = self.sr(tokens.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)  # (B, N_r, C)
        kv = self.kv(self.norm_sr(reduced))  # (B, N_r, 2C)
        kv = kv.reshape(batch, -1, 2, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def attend(self, x: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Residual cross-attention then Mix-FFN: ``(B, C, H, W)`` queries against ``(B, heads, M, d)`` keys."""
        batch, dim, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        q = self.q(self.norm_q(tokens)).reshape(batch, -1, self.num_heads, dim // self.num_heads).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, keys, values)  # (B, heads, N, d)
        tokens = tokens + self.drop_path1(self.proj(attended.transpose(1, 2).reshape(batch, -1, dim)))
        tokens = tokens + self.drop_path2(self.ffn(self.norm_ffn(tokens), [height, width]))
        return tokens.transpose(1, 2).reshape(batch, dim, height, width)


class CrossModalBlock(nn.Module):
    """Cross-attention among the present modalities of one stage: each is query, the other N-1 keys/values.

    Holds one :class:`CrossModalUnit` per modality, or a single one shared by all (``share_weights``). With a single
    modality present there is nothing to attend to and only its Mix-FFN runs.
    """

    def __init__(
        self,
        modalities: tuple[str, ...],
        dim: int,
        num_heads: int,
        sr_ratio: int,
        drop_path: float,
        share_weights: bool,
    ) -> None:
        super().__init__()
        self.share_weights = share_weights
        names = ("shared",) if share_weights else modalities
        self.units = nn.ModuleDict({name: CrossModalUnit(dim, num_heads, sr_ratio, drop_path) for name in names})

    def unit(self, modality: str) -> CrossModalUnit:
        """The projections used for ``modality``."""
        unit = self.units["shared" if self.share_weights else modality]
        assert isinstance(unit, CrossModalUnit)
        return unit

    def forward(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{modality: (B, C, H, W)}`` -> same shapes, each enriched by the other present modalities."""
        names = list(feats)
        if len(names) == 1:
            unit = self.unit(names[0])
            x = feats[names[0]]
            batch, dim, height, width = x.shape
            tokens = x.flatten(2).transpose(1, 2)
            tokens = tokens + unit.drop_path2(unit.ffn(unit.norm_ffn(tokens), [height, width]))
            return {names[0]: tokens.transpose(1, 2).reshape(batch, dim, height, width)}
        kv = {name: self.unit(name).keys_values(feats[name]) for name in names}
        out: dict[str, Tensor] = {}
        for name in names:
            others = [other for other in names if other != name]
            keys = torch.cat([kv[other][0] for other in others], dim=2)  # (B, heads, (N-1) * N_r, d)
            values = torch.cat([kv[other][1] for other in others], dim=2)
            out[name] = self.unit(name).attend(feats[name], keys, values)
        return out
