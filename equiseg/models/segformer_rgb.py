"""SegFormer (arXiv 2105.15203) on RGB alone: the single-modality baseline (docs/model.md, "Registry")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from equiseg.models.base import FusedFeatures, SegmentationModel, require_rgb, stage_feature_info
from equiseg.models.decoder import SegFormerHead
from equiseg.models.encoder import EncoderSpec, MiTBranch

__all__ = ["SegFormerRGB"]


class SegFormerRGB(SegmentationModel):
    """SegFormer on RGB only. Other modalities are accepted (so it runs on the same batches) and ignored.

    An absent RGB input is zero-filled (the normalised "missing" value), as the robustness benchmark does.
    """

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
        require_rgb(model_name, modalities)
        super().__init__(
            model_name=model_name,
            num_classes=num_classes,
            modalities=modalities,
            in_chans=in_chans,
            build_kwargs={"drop_path_rate": float(drop_path_rate)},
        )
        self.encoder = MiTBranch(spec, self.in_chans["rgb"], drop_path_rate)
        self.decoder = SegFormerHead(spec.embed_dims, spec.decoder_dim, num_classes)
        self.feature_info = stage_feature_info(spec.embed_dims, "encoder.stages.{}")

    def encode(self, inputs: Mapping[str, Tensor], present: list[str]) -> FusedFeatures:
        """RGB (zero-filled when absent) through MiT."""
        return FusedFeatures(stages=self.encoder(self.zero_filled(inputs, "rgb", inputs[present[0]])))
