"""Per-stage mean fusion over the present modalities: ``mean_fusion`` (AnySeg-like, arXiv 2411.17141: one shared
MiT) and ``late_fusion`` (one MiT per modality, no cross-modal block; a capacity control for EQUISeg).

AnySeg's per-stage mean without its teacher-student training (docs/model.md, "Registry").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from equiseg.models.base import FusedFeatures, SegmentationModel, stage_feature_info, uniform_weights
from equiseg.models.decoder import SegFormerHead
from equiseg.models.encoder import EncoderSpec, ModalityEncoders

__all__ = ["LateFusion", "MeanFusion"]


class MeanFusion(SegmentationModel):
    """One shared MiT (per-modality stems for ``in_chans``), per-stage mean over present modalities.

    The branches stay separate through the encoder; only the decoder input is the mean. Weight sharing is the design,
    so ``share_encoder_weights`` is not an option here.
    """

    supports_missing_modalities = True
    #: one set of MiT stages for every modality (AnySeg) or one branch per modality (:class:`LateFusion`)
    shared_encoder = True

    def __init__(
        self,
        *,
        model_name: str,
        spec: EncoderSpec,
        num_classes: int,
        modalities: Sequence[str],
        in_chans: Mapping[str, int] | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(
            model_name=model_name,
            num_classes=num_classes,
            modalities=modalities,
            in_chans=in_chans,
            build_kwargs={"drop_path_rate": float(drop_path_rate)},
        )
        self.encoders = ModalityEncoders(
            spec, self.in_chans, share_weights=self.shared_encoder, drop_path_rate=drop_path_rate
        )
        self.decoder = SegFormerHead(spec.embed_dims, spec.decoder_dim, num_classes)
        where = "encoders.shared" if self.shared_encoder else f"encoders.branches.{self.modalities[0]}"
        self.feature_info = stage_feature_info(spec.embed_dims, where + ".stages.{}")

    def encode(self, inputs: Mapping[str, Tensor], present: list[str]) -> FusedFeatures:
        """Encode each present modality and average per stage (uniform modality weights)."""
        feats = self.encoders.stem({name: inputs[name] for name in present})
        out = FusedFeatures(stages=[])
        for index in range(len(self.encoders.embed_dims)):
            feats = self.encoders.stage(index, feats)
            out.stages.append(torch.stack(list(feats.values()), dim=0).mean(dim=0))  # (B, C_i, h_i, w_i)
            out.per_modality.append(feats)
            fused = out.stages[-1]
            out.modality_weights[f"stage{index + 1}"] = uniform_weights(fused.shape[0], len(present), fused)
        return out


class LateFusion(MeanFusion):
    """One MiT branch per modality (as EQUISeg's, without CMTB, selection or SGM), per-stage mean over the present
    modalities into the SegFormer head: what EQUISeg's fusion machinery adds at the same encoder capacity."""

    shared_encoder = False
