"""Cross-modal attention of EQUISeg's Cross-modal Transformer Block (CMTB), arXiv 2509.24505 (abstract).

The paper states a four-stage CMTB that encodes every modality equally. Third-party summaries add that it puts
cross-attention beside SegFormer's efficient self-attention, with one modality as primary and the other N-1 as
auxiliary, and a residual connection. Our reading (docs/model.md): the last transformer block of every MiT stage
becomes a CMTB, ``SR self-attention (within the modality) -> cross-attention -> Mix-FFN``; in the cross-attention
every present modality in turn is the query and the other present modalities give keys/values (spatially reduced
like SegFormer's attention), added back residually. No modality is privileged: each is primary for its own branch.
The self-attention and Mix-FFN are the halves of ``mit.MiTBlock`` (see ``encoder.MiTBranch.stage_before_cross``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equiseg.models.mit import BLOCK_NORM_EPS, DropPath, trunc_normal_

__all__ = ["CrossModalAttention", "CrossModalUnit"]


class CrossModalUnit(nn.Module):
    """Projections of one modality in a CMTB: its queries, its spatially reduced keys/values and output proj."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, drop_path: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.norm_kv = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.q = nn.Linear(dim, dim)
        self.sr: nn.Module = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else nn.Identity()
        self.norm_sr: nn.Module = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS) if sr_ratio > 1 else nn.Identity()
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop_path: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        for linear in (self.q, self.kv, self.proj):
            trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def keys_values(self, tokens: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Tokens ``(B, h*w, C)`` -> keys and values ``(B, heads, h*w / sr^2, C / heads)`` each."""
        batch, _, dim = tokens.shape
        normed = self.norm_kv(tokens).transpose(1, 2).reshape(batch, dim, size[0], size[1])  # (B, C, h, w)
        reduced = self.sr(normed).flatten(2).transpose(1, 2)  # (B, N_r, C)
        kv = self.kv(self.norm_sr(reduced))  # (B, N_r, 2C)
        kv = kv.reshape(batch, -1, 2, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def attend(self, tokens: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Residual cross-attention of ``(B, N, C)`` queries against ``(B, heads, M, d)`` keys/values."""
        batch, _, dim = tokens.shape
        q = self.q(self.norm_q(tokens)).reshape(batch, -1, self.num_heads, dim // self.num_heads).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, keys, values)  # (B, heads, N, d)
        return tokens + self.drop_path(self.proj(attended.transpose(1, 2).reshape(batch, -1, dim)))


class CrossModalAttention(nn.Module):
    """Cross-attention among the present modalities of one stage: each is query, the other N-1 keys/values.

    Holds one :class:`CrossModalUnit` per modality, or one shared by all (``share_weights``). With a single modality
    present there is nothing to attend to and the tokens pass through unchanged.
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

    def forward(self, tokens: dict[str, Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        """``{modality: (B, h*w, C)}`` -> same shapes, each enriched by the other present modalities."""
        names = list(tokens)
        if len(names) == 1:
            return dict(tokens)
        kv = {name: self.unit(name).keys_values(tokens[name], size) for name in names}
        out: dict[str, Tensor] = {}
        for name in names:
            others = [other for other in names if other != name]
            keys = torch.cat([kv[other][0] for other in others], dim=2)  # (B, heads, (N-1) * N_r, d)
            values = torch.cat([kv[other][1] for other in others], dim=2)
            out[name] = self.unit(name).attend(tokens[name], keys, values)
        return out
