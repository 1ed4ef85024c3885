"""MiT four-stage encoder branches (SegFormer, arXiv 2105.15203), one per modality, run stage by stage.

Built from our own MiT layers (:mod:`equiseg.models.mit`; parameter names as timm's ``pvt_v2``). A branch keeps the
two parts a feature pyramid needs, ``patch_embed`` and ``stages.<i>``, so one branch per modality can be run stage
by stage and fused in between. Only the CMTB, which puts cross-attention inside a stage's last block, opens a stage
up (:meth:`MiTBranch.stage_before_cross`, :meth:`MiTBranch.stage_after_cross`). ``tests/model/test_encoder_parity.py``
checks weights and outputs against timm's ``PyramidVisionTransformerV2``.
"""

from __future__ import annotations

import typing

import torch
from torch import Tensor, nn

from equiseg.models.catalog import VARIANTS, EncoderSpec
from equiseg.models.mit import MiTBlock, MiTStage, OverlapPatchEmbed, block_drop_path_rates, init_mit_weights

__all__ = [
    "STEM_BIAS_STD",
    "VARIANTS",
    "EncoderSpec",
    "MiTBranch",
    "ModalityEncoders",
    "init_stem_bias",
    "stage_drop_path_rates",
]


def stage_drop_path_rates(spec: EncoderSpec, drop_path_rate: float) -> list[float]:
    """Stochastic-depth rate of each stage's last block (the CMTB's), from the MiT's per-block schedule."""
    return [rates[-1] for rates in block_drop_path_rates(spec.depths, drop_path_rate)]


#: Std of the patch-embedding bias init. Not zero (SegFormer's default): a zero-filled modality (modality dropout,
#: the zero-fill EMM protocol) would then enter the stem LayerNorm as an all-zero token, and every LayerNorm backward
#: at zero variance multiplies the gradient by ``1/sqrt(eps)`` (316-1000). Through a branch's chain of norms that
#: gave gradient norms of 1e6 (equiseg_tiny) to inf (cmnext_like, mean_fusion): clipping then wiped out the step,
#: or the loss went NaN (cmnext_like_b0, bf16 and fp32). With a random bias a zero input is a non-degenerate token.
STEM_BIAS_STD = 0.02


def init_stem_bias(proj: nn.Conv2d) -> None:
    """Random, non-zero patch-embedding bias (see :data:`STEM_BIAS_STD`)."""
    if proj.bias is not None:
        nn.init.normal_(proj.bias, 0.0, STEM_BIAS_STD)


class MiTBranch(nn.Module):
    """One four-stage MiT encoder (MLP ratio 4), usable stage by stage.

    ``stem(x)`` maps ``(B, C_in, H, W)`` to the stage-1 tokens ``(B, H/4, W/4, C1)``; ``stage(i, x)`` runs stage
    ``i`` (0-based) and returns ``(B, C_i, H/2^(i+2), W/2^(i+2))``; stage ``i > 0`` takes the previous stage's
    ``(B, C, H, W)`` output.
    """

    def __init__(self, spec: EncoderSpec, in_chans: int | None, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        # The stem is built (and initialised) even for in_chans=None, so a seed draws the same stage weights either
        # way; it is then dropped (the stems live elsewhere, one per modality).
        stem = OverlapPatchEmbed(7, 4, in_chans or 3, spec.embed_dims[0])
        self.patch_embed: OverlapPatchEmbed | None = stem
        rates = block_drop_path_rates(spec.depths, drop_path_rate)
        dims_in = (spec.embed_dims[0], *spec.embed_dims[:-1])
        self.stages = nn.Sequential(
            *(
                MiTStage(dim_in, dim, depth, heads, sr, stage_rates, downsample=index > 0)
                for index, (dim_in, dim, depth, heads, sr, stage_rates) in enumerate(
                    zip(dims_in, spec.embed_dims, spec.depths, spec.num_heads, spec.sr_ratios, rates, strict=True)
                )
            )
        )
        self.apply(init_mit_weights)
        if in_chans is None:
            self.patch_embed = None
        else:
            init_stem_bias(stem.proj)
        self.embed_dims = spec.embed_dims
        self.feature_info: list[dict[str, object]] = [
            {"num_chs": dim, "reduction": 4 * 2**index, "module": f"stages.{index}"}
            for index, dim in enumerate(spec.embed_dims)
        ]

    def _stage(self, index: int) -> MiTStage:
        return typing.cast(MiTStage, self.stages[index])

    def stem(self, x: Tensor) -> Tensor:
        """Overlapping 7x7/4 patch embedding: ``(B, C_in, H, W)`` -> ``(B, H/4, W/4, C1)``."""
        if self.patch_embed is None:
            raise RuntimeError("this MiTBranch was built without a stem (in_chans=None); use a per-modality stem")
        out: Tensor = self.patch_embed(x)
        return out

    def stage(self, index: int, x: Tensor) -> Tensor:
        """Run stage ``index`` whole; returns ``(B, C_index, h, w)``."""
        out: Tensor = self.stages[index](x)
        return out

    def stage_before_cross(self, index: int, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Stage ``index`` up to and including the last block's SR self-attention.

        Returns tokens ``(B, h*w, C)`` and ``(h, w)``; the CMTB's cross-attention goes here, before the last block's
        Mix-FFN (:meth:`stage_after_cross`). Both together equal :meth:`stage` when nothing is done in between.
        """
        stage = self._stage(index)
        tokens, size = stage.enter(x)
        for block in stage.blocks[:-1]:
            tokens = block(tokens, size)
        return typing.cast(MiTBlock, stage.blocks[-1]).attention_half(tokens, size), size

    def stage_after_cross(self, index: int, tokens: Tensor, size: tuple[int, int]) -> Tensor:
        """The last block's Mix-FFN and the stage norm: ``(B, h*w, C)`` -> ``(B, C, h, w)``."""
        stage = self._stage(index)
        return stage.leave(typing.cast(MiTBlock, stage.blocks[-1]).mlp_half(tokens, size), size)

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
                stem = OverlapPatchEmbed(7, 4, chans, spec.embed_dims[0])
                init_mit_weights(stem.proj)
                init_stem_bias(stem.proj)
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
