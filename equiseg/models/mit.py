"""Mix Transformer (MiT) layers: SegFormer's encoder (arXiv 2105.15203), PVTv2 with MLP ratio 4 (arXiv 2106.13797).

Our own implementation, written so the model needs torch alone: importing timm pulls in torchvision and
``torch._dynamo`` (about 2 s a process, paid by every pipeline task that builds a model; docs/training.md, "Speed").
Parameter names follow timm's ``pvt_v2`` (``patch_embed``, ``stages.<i>.downsample``, ``.blocks.<j>.attn.q`` ...)
so checkpoints written while the encoder was timm's load unchanged, and the modules are created and initialised in
timm's order, so a seed gives the same weights as before. ``tests/model/test_encoder_parity.py`` checks weights and
outputs against timm.

Layout: the stem and each stage's downsampling return channels-last maps ``(B, h, w, C)``; blocks work on tokens
``(B, h*w, C)`` with the map size passed beside them; a stage returns ``(B, C, h, w)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BLOCK_NORM_EPS",
    "DropPath",
    "EfficientSelfAttention",
    "MiTBlock",
    "MiTStage",
    "MixFFN",
    "OverlapPatchEmbed",
    "block_drop_path_rates",
    "init_mit_weights",
    "trunc_normal_",
]

#: LayerNorm epsilon of the blocks and stage norms (timm's ``LayerNorm`` default); the patch embeddings and the
#: attention's spatial-reduction norm keep PyTorch's 1e-5, as in SegFormer's and timm's code.
BLOCK_NORM_EPS = 1e-6


class DropPath(nn.Module):
    """Stochastic depth (arXiv 1603.09382): zero a sample's residual branch with probability ``p``, rescale the rest."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _drop_path(p: float) -> nn.Module:
    return DropPath(p) if p > 0.0 else nn.Identity()


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided conv then LayerNorm, ``(B, C_in, H, W)`` -> ``(B, H/s, W/s, C)``."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        if patch_size <= stride:
            raise ValueError(f"patch_size {patch_size} must exceed stride {stride} for the patches to overlap")
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.norm(self.proj(x).permute(0, 2, 3, 1))
        return out


class EfficientSelfAttention(nn.Module):
    """SegFormer's efficient self-attention: keys and values from a map reduced ``sr_ratio`` times per side."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr: nn.Conv2d | None = None
        self.norm: nn.LayerNorm | None = None
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        batch, length, dim = x.shape
        q = self.q(x).reshape(batch, length, self.num_heads, -1).permute(0, 2, 1, 3)  # (B, heads, N, d)
        if self.sr is not None and self.norm is not None:
            x = x.permute(0, 2, 1).reshape(batch, dim, size[0], size[1])
            x = self.norm(self.sr(x).reshape(batch, dim, -1).permute(0, 2, 1))  # (B, N / sr^2, C)
        kv = self.kv(x).reshape(batch, -1, 2, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        out: Tensor = self.proj(attended.transpose(1, 2).reshape(batch, length, dim))
        return out


class MixFFN(nn.Module):
    """Mix-FFN: ``fc1 -> depth-wise 3x3 conv -> GELU -> fc2``; the conv gives positional information."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.fc1(x)
        batch, _, hidden = x.shape
        x = self.dwconv(x.transpose(1, 2).view(batch, hidden, size[0], size[1]))
        out: Tensor = self.fc2(F.gelu(x.flatten(2).transpose(1, 2)))
        return out


class MiTBlock(nn.Module):
    """One transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``, each branch with stochastic depth."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, drop_path: float, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.drop_path1 = _drop_path(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))
        self.drop_path2 = _drop_path(drop_path)

    def attention_half(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """First residual half: efficient self-attention."""
        out: Tensor = x + self.drop_path1(self.attn(self.norm1(x), size))
        return out

    def mlp_half(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """Second residual half: Mix-FFN."""
        out: Tensor = x + self.drop_path2(self.mlp(self.norm2(x), size))
        return out

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.mlp_half(self.attention_half(x, size), size)


class MiTStage(nn.Module):
    """One encoder stage: optional 3x3/2 overlapping downsampling, ``depth`` blocks, a final LayerNorm."""

    def __init__(
        self, dim_in: int, dim: int, depth: int, num_heads: int, sr_ratio: int, drop_path: list[float], downsample: bool
    ) -> None:
        super().__init__()
        if len(drop_path) != depth:
            raise ValueError(f"need one drop-path rate per block: {depth} blocks, {len(drop_path)} rates")
        if not downsample and dim_in != dim:
            raise ValueError(f"a stage without downsampling keeps its width: dim_in {dim_in} != dim {dim}")
        self.downsample = OverlapPatchEmbed(3, 2, dim_in, dim) if downsample else None
        self.blocks = nn.ModuleList(MiTBlock(dim, num_heads, sr_ratio, rate) for rate in drop_path)
        self.norm = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)

    def enter(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Downsample to tokens ``(B, h*w, C)`` and ``(h, w)``; stage 0 takes the stem output ``(B, h, w, C)``."""
        if self.downsample is not None:
            x = self.downsample(x)
        batch, height, width, dim = x.shape
        return x.reshape(batch, -1, dim), (height, width)

    def leave(self, tokens: Tensor, size: tuple[int, int]) -> Tensor:
        """The stage norm: tokens ``(B, h*w, C)`` -> ``(B, C, h, w)``."""
        tokens = self.norm(tokens)
        return tokens.reshape(tokens.shape[0], size[0], size[1], -1).permute(0, 3, 1, 2).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        tokens, size = self.enter(x)
        for block in self.blocks:
            tokens = block(tokens, size)
        return self.leave(tokens, size)


def block_drop_path_rates(depths: tuple[int, ...], drop_path_rate: float) -> list[list[float]]:
    """Stochastic-depth rate of every block, rising linearly from 0 over all blocks, grouped by stage."""
    rates = torch.linspace(0, drop_path_rate, sum(depths)).split(list(depths))
    return [stage.tolist() for stage in rates]


def trunc_normal_(tensor: Tensor, std: float, bound: float = 2.0) -> Tensor:
    """Fill ``tensor`` from N(0, std²) truncated to ``[-bound, bound]``, by the inverse CDF of a uniform draw.

    One uniform draw per element, so a seed gives the weights SegFormer's and timm's initialisation give (PyTorch
    2.14's ``nn.init.trunc_normal_`` samples by rejection and draws different numbers).
    """
    low, high = (0.5 * (1.0 + math.erf(edge / (std * math.sqrt(2.0)))) for edge in (-bound, bound))
    with torch.no_grad():
        tensor.uniform_(2.0 * low - 1.0, 2.0 * high - 1.0).erfinv_()
        return tensor.mul_(std * math.sqrt(2.0)).clamp_(-bound, bound)


def init_mit_weights(module: nn.Module) -> None:
    """MiT initialisation (``module.apply``): truncated-normal linears (std 0.02), fan-out normal convs, zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
