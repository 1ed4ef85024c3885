"""EQUISeg: equal encoding, four-stage CMTB with hierarchical selection, SGM (Li et al., arXiv 2509.24505).

Composition only; the blocks live in ``encoder`` (MiT branches), ``cmtb`` (cross-modal attention), ``selection``
(hierarchical selection), ``sgm`` (Self-guided Module) and ``decoder`` (SegFormer head). See docs/model.md for which
parts the paper states and which are our interpretation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from equiseg.models.base import FusedFeatures, SegmentationModel, stage_feature_info
from equiseg.models.cmtb import CrossModalAttention
from equiseg.models.decoder import SegFormerHead
from equiseg.models.encoder import EncoderSpec, ModalityEncoders, stage_drop_path_rates
from equiseg.models.selection import StageSelection
from equiseg.models.sgm import SGM_TERMS, SelfGuidedModule

__all__ = ["EQUISeg"]


class EQUISeg(SegmentationModel):
    """Multi-branch MiT encoder fused by a CMTB at each of four stages, SegFormer head, optional SGM.

    Absent modalities are simply not encoded: the CMTB attends among, and the selection weighs, only the present ones.
    The branches run all four stages first; then the SGM heads predict per modality, their contribution estimates
    become the prior of every stage's per-position selection, and the selected maps go to the decoder.
    ``sgm_terms`` picks the SGM's loss terms (the ablation families fix it).
    """

    supports_missing_modalities = True

    def __init__(
        self,
        *,
        model_name: str,
        spec: EncoderSpec,
        num_classes: int,
        modalities: Sequence[str],
        in_chans: Mapping[str, int] | None = None,
        share_encoder_weights: bool = False,
        sgm_weight: float = 1.0,
        drop_path_rate: float = 0.0,
        use_sgm: bool = True,
        ignore_index: int = 255,
        sgm_terms: tuple[str, ...] = SGM_TERMS,
    ) -> None:
        build_kwargs: dict[str, object] = {
            "share_encoder_weights": bool(share_encoder_weights),
            "drop_path_rate": float(drop_path_rate),
            "ignore_index": int(ignore_index),
        }
        if use_sgm:
            build_kwargs["sgm_weight"] = float(sgm_weight)  # sgm_terms is fixed by the family name
        super().__init__(
            model_name=model_name,
            num_classes=num_classes,
            modalities=modalities,
            in_chans=in_chans,
            build_kwargs=build_kwargs,
        )
        self.encoders = ModalityEncoders(
            spec, self.in_chans, share_weights=share_encoder_weights, drop_path_rate=drop_path_rate
        )
        rates = stage_drop_path_rates(spec, drop_path_rate)
        self.cmtb = nn.ModuleList(
            CrossModalAttention(self.modalities, dim, heads, sr, rate, share_encoder_weights)
            for dim, heads, sr, rate in zip(spec.embed_dims, spec.num_heads, spec.sr_ratios, rates, strict=True)
        )
        self.selection = nn.ModuleList(StageSelection(dim, use_prior=use_sgm) for dim in spec.embed_dims)
        self.decoder = SegFormerHead(spec.embed_dims, spec.decoder_dim, num_classes)
        self.sgm = (
            SelfGuidedModule(
                self.modalities,
                spec.embed_dims,
                num_classes,
                weight=sgm_weight,
                ignore_index=ignore_index,
                terms=sgm_terms,
            )
            if use_sgm
            else None
        )
        self.feature_info = stage_feature_info(spec.embed_dims, "selection.{}")

    def encode(self, inputs: Mapping[str, Tensor], present: list[str]) -> FusedFeatures:
        """Branches of the present modalities with a CMTB inside every stage; SGM heads and their contribution
        estimates; per-position hierarchical selection of every stage for the decoder."""
        feats = self.encoders.stem({name: inputs[name] for name in present})  # {m: (B, H/4, W/4, C1)}
        out = FusedFeatures(stages=[])
        for index, cmtb in enumerate(self.cmtb):
            # CMTB: SR self-attention within each modality -> cross-modal attention -> Mix-FFN (+ stage norm).
            tokens, size = self.encoders.stage_before_cross(index, feats)  # {m: (B, h_i*w_i, C_i)}
            tokens = cmtb(tokens, size)
            feats = self.encoders.stage_after_cross(index, tokens, size)  # {m: (B, C_i, h_i, w_i)}
            out.per_modality.append(feats)
        if self.sgm is not None:
            out.aux_logits = self.sgm.predict(out.per_modality)
            out.contribution = self.sgm.contribution(out.aux_logits)  # (B, N, H/4, W/4)
        logits_prev: Tensor | None = None
        for index, select in enumerate(self.selection):
            stage_fused, weights, logits_prev = select(out.per_modality[index], logits_prev, out.contribution)
            out.stages.append(stage_fused)
            out.selection_maps[f"stage{index + 1}"] = weights
            out.modality_weights[f"stage{index + 1}"] = weights.mean(dim=(2, 3))
        return out

    def auxiliary_losses(self, features: FusedFeatures, labels: Tensor, size: tuple[int, int]) -> dict[str, Tensor]:
        """The SGM's weighted losses (none without the SGM); ``labels`` must be ``(B, H, W)`` at the input size."""
        if self.sgm is None:
            return {}
        expected = (features.stages[0].shape[0], *size)
        if labels.shape != expected:
            raise ValueError(f"labels must be (B, H, W) = {expected}, got {tuple(labels.shape)}")
        losses: dict[str, Tensor] = self.sgm(features.per_modality, features.aux_logits, labels)
        return losses
