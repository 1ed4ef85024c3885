"""MiT-style four-stage encoder branches built from timm's ``pvt_v2`` (SegFormer, arXiv 2105.15203).

PVTv2 (arXiv 2106.13797) with ``mlp_ratios=(4, 4, 4, 4)`` is architecturally SegFormer's Mix Transformer (MiT):
overlapping patch embeddings, spatial-reduction self-attention and a Mix-FFN with a depth-wise 3x3 conv. We reuse
timm's ``PyramidVisionTransformerV2`` (``pretrained=False``: no weights are downloaded) and keep the two parts its
``feature_info`` names, ``patch_embed`` and ``stages.<i>``, so one branch per modality can be run stage by stage
and fused in between. A whole stage runs through timm's own stage forward; only the CMTB, which puts
cross-attention inside a stage's last block, opens a stage up (:func:`enter_stage`, :func:`attention_half`,
:func:`mlp_half`, :func:`leave_stage`). ``tests/model/test_encoder_parity.py`` checks both against timm.
"""

from __future__ import annotations

import typing

import torch
from timm.models.pvt_v2 import Block, OverlapPatchEmbed, PyramidVisionTransformerStage, PyramidVisionTransformerV2
from torch import Tensor, nn

from equiseg.models.catalog import VARIANTS, EncoderSpec

__all__ = [
    "STEM_BIAS_STD",
    "VARIANTS",
    "EncoderSpec",
    "MiTBranch",
    "ModalityEncoders",
    "attention_half",
    "enter_stage",
    "init_stem_bias",
    "leave_stage",
    "mlp_half",
    "stage_drop_path_rates",
]


def stage_drop_path_rates(spec: EncoderSpec, drop_path_rate: float) -> list[float]:
    """Stochastic-depth rate at the end of each stage (linear over all blocks, as timm and SegFormer do)."""
    total = sum(spec.depths)
    rates: list[float] = []
    seen = 0
    for depth in spec.depths:
        seen += depth
        rates.append(drop_path_rate * (seen - 1) / max(total - 1, 1))
    return rates


#: Std of the patch-embedding bias init. Not zero (timm's default): a zero-filled modality (modality dropout, the
#: zero-fill EMM protocol) would then enter the stem LayerNorm as an all-zero token, and every LayerNorm backward
#: at zero variance multiplies the gradient by ``1/sqrt(eps)`` (316-1000). Through a branch's chain of norms that
#: gave gradient norms of 1e6 (equiseg_tiny) to inf (cmnext_like, mean_fusion): clipping then wiped out the step,
#: or the loss went NaN (cmnext_like_b0, bf16 and fp32). With a random bias a zero input is a non-degenerate token.
STEM_BIAS_STD = 0.02


def init_stem_bias(proj: nn.Conv2d) -> None:
    """Random, non-zero patch-embedding bias (see :data:`STEM_BIAS_STD`)."""
    if proj.bias is not None:
        nn.init.normal_(proj.bias, 0.0, STEM_BIAS_STD)


def enter_stage(stage: PyramidVisionTransformerStage, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """A stage's downsampling: ``(B, C_prev, H, W)`` or stem tokens ``(B, h, w, C)`` -> ``(B, h*w, C)``, ``(h, w)``."""
    if stage.downsample is not None:
        x = stage.downsample(x)  # (B, C_prev, H, W) -> (B, h, w, C)
    batch, height, width, dim = x.shape
    return x.reshape(batch, -1, dim), (height, width)


def attention_half(block: Block, tokens: Tensor, size: tuple[int, int]) -> Tensor:
    """First residual half of a timm ``pvt_v2`` block: SR self-attention."""
    return tokens + block.drop_path1(block.attn(block.norm1(tokens), size))


def mlp_half(block: Block, tokens: Tensor, size: tuple[int, int]) -> Tensor:
    """Second residual half of a timm ``pvt_v2`` block: Mix-FFN."""
    return tokens + block.drop_path2(block.mlp(block.norm2(tokens), size))


def leave_stage(stage: PyramidVisionTransformerStage, tokens: Tensor, size: tuple[int, int]) -> Tensor:
    """A stage's final norm: ``(B, h*w, C)`` -> ``(B, C, h, w)``."""
    tokens = stage.norm(tokens)
    batch, _, dim = tokens.shape
    return tokens.reshape(batch, size[0], size[1], dim).permute(0, 3, 1, 2).contiguous()


class MiTBranch(nn.Module):
    """One four-stage MiT encoder (timm ``pvt_v2`` with MLP ratio 4), usable stage by stage.

    ``stem(x)`` maps ``(B, C_in, H, W)`` to the stage-1 tokens ``(B, H/4, W/4, C1)``; ``stage(i, x)`` runs stage
    ``i`` (0-based) and returns ``(B, C_i, H/2^(i+2), W/2^(i+2))``; stage ``i > 0`` takes the previous stage's
    ``(B, C, H, W)`` output.
    """

    def __init__(self, spec: EncoderSpec, in_chans: int | None, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        timm_model = PyramidVisionTransformerV2(
            in_chans=in_chans or 3,
            num_classes=0,
            depths=spec.depths,
            embed_dims=spec.embed_dims,
            num_heads=spec.num_heads,
            sr_ratios=spec.sr_ratios,
            mlp_ratios=(4.0, 4.0, 4.0, 4.0),
            drop_path_rate=drop_path_rate,
        )
        # in_chans=None: stages only (the stems live elsewhere, one per modality).
        self.patch_embed: OverlapPatchEmbed | None = timm_model.patch_embed if in_chans is not None else None
        if self.patch_embed is not None:
            init_stem_bias(self.patch_embed.proj)
        self.stages = timm_model.stages
        self.embed_dims = spec.embed_dims
        self.feature_info: list[dict[str, object]] = list(timm_model.feature_info)

    def _stage(self, index: int) -> PyramidVisionTransformerStage:
        return typing.cast(PyramidVisionTransformerStage, self.stages[index])

    def stem(self, x: Tensor) -> Tensor:
        """Overlapping 7x7/4 patch embedding: ``(B, C_in, H, W)`` -> ``(B, H/4, W/4, C1)``."""
        if self.patch_embed is None:
            raise RuntimeError("this MiTBranch was built without a stem (in_chans=None); use a per-modality stem")
        out: Tensor = self.patch_embed(x)
        return out

    def stage(self, index: int, x: Tensor) -> Tensor:
        """Run stage ``index`` through timm's stage forward; returns ``(B, C_index, h, w)``."""
        out: Tensor = self.stages[index](x)
        return out

    def stage_before_cross(self, index: int, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Stage ``index`` up to and including the last block's SR self-attention.

        Returns tokens ``(B, h*w, C)`` and ``(h, w)``; the CMTB's cross-attention goes here, before the last block's
        Mix-FFN (:meth:`stage_after_cross`). Both together equal :meth:`stage` when nothing is done in between.
        """
        stage = self._stage(index)
        tokens, size = enter_stage(stage, x)
        for block in stage.blocks[:-1]:
            tokens = block(tokens, size)
        return attention_half(typing.cast(Block, stage.blocks[-1]), tokens, size), size

    def stage_after_cross(self, index: int, tokens: Tensor, size: tuple[int, int]) -> Tensor:
        """The last block's Mix-FFN and the stage norm: ``(B, h*w, C)`` -> ``(B, C, h, w)``."""
        stage = self._stage(index)
        return leave_stage(stage, mlp_half(typing.cast(Block, stage.blocks[-1]), tokens, size), size)

    def forward(self, x: Tensor) -> list[Tensor]:
        """All four stage outputs of one image batch."""
        return self.forward_from_stem(self.stem(x))

    def forward_from_stem(self, h: Tensor) -> list[Tensor]:
        """All four stage outputs from stem tokens ``(B, H/4, W/4, C1)``."""
        feats: list[Tensor] = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats


class ModalityEncoders(nn.Module):
    """One MiT branch per modality ("equal encoding"), or per-modality stems in front of shared stages.

    Every modality always has its own 7x7/4 patch embedding (its own ``in_chans``); with ``share_weights`` the four
    stages are one set of weights applied to all modalities (batched together), otherwise each modality has its own.
    """

    def __init__(
        self, spec: EncoderSpec, in_chans: dict[str, int], *, share_weights: bool, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.share_weights = share_weights
        self.embed_dims = spec.embed_dims
        self.stems = nn.ModuleDict()
        self.branches = nn.ModuleDict()
        self.shared: MiTBranch | None = None
        if share_weights:
            for name, chans in in_chans.items():
                stem = OverlapPatchEmbed(patch_size=7, stride=4, in_chans=chans, embed_dim=spec.embed_dims[0])
                conv: nn.Conv2d = stem.proj
                fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
                nn.init.normal_(conv.weight, 0.0, (2.0 / fan_out) ** 0.5)  # as timm's pvt_v2 initialises convs
                init_stem_bias(conv)
                self.stems[name] = stem
            self.shared = MiTBranch(spec, None, drop_path_rate)
        else:
            for name, chans in in_chans.items():
                self.branches[name] = MiTBranch(spec, chans, drop_path_rate)

    def branch(self, name: str) -> MiTBranch:
        """The unshared branch of modality ``name``."""
        return typing.cast(MiTBranch, self.branches[name])

    def stem(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{modality: (B, C_in, H, W)}`` -> ``{modality: (B, H/4, W/4, C1)}``."""
        if self.share_weights:
            return {name: self.stems[name](x) for name, x in inputs.items()}
        return {name: self.branch(name).stem(x) for name, x in inputs.items()}

    def stage(self, index: int, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Run stage ``index`` on every modality; shared weights run all modalities as one batch."""
        tokens, size = self.stage_before_cross(index, feats)
        return self.stage_after_cross(index, tokens, size)

    def stage_before_cross(self, index: int, feats: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[int, int]]:
        """:meth:`MiTBranch.stage_before_cross` for every modality: ``{m: (B, h*w, C)}`` and ``(h, w)``."""
        if self.shared is not None:
            names = list(feats)
            batch = feats[names[0]].shape[0]
            tokens, size = self.shared.stage_before_cross(index, torch.cat([feats[n] for n in names], dim=0))
            return dict(zip(names, tokens.split(batch, dim=0), strict=True)), size
        out: dict[str, Tensor] = {}
        size = (0, 0)
        for name, x in feats.items():
            out[name], size = self.branch(name).stage_before_cross(index, x)
        return out, size

    def stage_after_cross(self, index: int, tokens: dict[str, Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        """:meth:`MiTBranch.stage_after_cross` for every modality: ``{m: (B, C, h, w)}``."""
        if self.shared is not None:
            names = list(tokens)
            batch = tokens[names[0]].shape[0]
            out = self.shared.stage_after_cross(index, torch.cat([tokens[n] for n in names], dim=0), size)
            return dict(zip(names, out.split(batch, dim=0), strict=True))
        return {name: self.branch(name).stage_after_cross(index, t, size) for name, t in tokens.items()}
