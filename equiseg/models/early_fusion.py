"""Early fusion, "equal-level concatenation": every modality stacked along channels into one MiT (docs/model.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from equiseg.models.base import FusedFeatures, SegmentationModel, stage_feature_info
from equiseg.models.decoder import SegFormerHead
from equiseg.models.encoder import EncoderSpec, MiTBranch

__all__ = ["EarlyFusion"]


class EarlyFusion(SegmentationModel):
    """All modalities concatenated along channels (``model.modalities`` order, absent ones zero-filled), one MiT."""

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
        self.encoder = MiTBranch(spec, sum(self.in_chans.values()), drop_path_rate)
        self.decoder = SegFormerHead(spec.embed_dims, spec.decoder_dim, num_classes)
        self.feature_info = stage_feature_info(spec.embed_dims, "encoder.stages.{}")

    def encode(self, inputs: Mapping[str, Tensor], present: list[str]) -> FusedFeatures:
        """Concatenate every modality (absent ones zero-filled) and encode the stack."""
        like = inputs[present[0]]
        stacked = torch.cat([self.zero_filled(inputs, name, like) for name in self.modalities], dim=1)
        return FusedFeatures(stages=self.encoder(stacked))
