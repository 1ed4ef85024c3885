"""RGB-dominant baseline after CMNeXt (arXiv 2303.01480): the design EQUISeg argues against (docs/model.md).

An RGB branch plus one shared auxiliary branch; per stage a Self-Query-Hub-like scorer re-weights and max-fuses the
auxiliary modalities, and a light rectify/fuse (a stand-in for CMX/CMNeXt's FRM + FFM) merges them into RGB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from equiseg.models.base import FusedFeatures, SegmentationModel, require_rgb, stage_feature_info
from equiseg.models.decoder import SegFormerHead
from equiseg.models.encoder import EncoderSpec, MiTBranch, ModalityEncoders

__all__ = ["CMNeXtLike", "RectifyFuse", "SelfQueryHub"]


class SelfQueryHub(nn.Module):
    """CMNeXt-style self-query hub: score each auxiliary map, re-weight ``x + s*x``, element-wise max."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, 1, 1), nn.Sigmoid())

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``[(B, C, h, w)] * N_aux`` -> fused ``(B, C, h, w)`` and mean scores ``(B, N_aux)``."""
        scores = [self.score(x) for x in feats]  # (B, 1, h, w) each
        weighted = torch.stack([x + s * x for x, s in zip(feats, scores, strict=True)], dim=0)
        return weighted.max(dim=0).values, torch.cat([s.mean(dim=(2, 3)) for s in scores], dim=1)


class RectifyFuse(nn.Module):
    """Light stand-in for CMX/CMNeXt's FRM + FFM: rectify RGB with the hub output, fuse both for the decoder."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.rectify: nn.Conv2d = nn.Conv2d(dim, dim, 1)
        self.fuse = nn.Sequential(nn.Conv2d(2 * dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        nn.init.zeros_(self.rectify.weight)
        if self.rectify.bias is not None:
            nn.init.zeros_(self.rectify.bias)

    def forward(self, rgb: Tensor, aux: Tensor) -> tuple[Tensor, Tensor]:
        """Return (rectified RGB for the next stage, fused map for the decoder)."""
        rectified = rgb + self.rectify(aux)
        return rectified, rectified + self.fuse(torch.cat([rgb, aux], dim=1))


class CMNeXtLike(SegmentationModel):
    """RGB-primary encoder + shared auxiliary branch + hub (the RGB-dominant design EQUISeg argues against).

    All modalities are always encoded, absent ones zero-filled (as CMNeXt is evaluated). With RGB as the only
    modality it reduces to SegFormer.
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
        self.aux_modalities = tuple(name for name in self.modalities if name != "rgb")
        self.rgb = MiTBranch(spec, self.in_chans["rgb"], drop_path_rate)
        self.aux: ModalityEncoders | None = None
        if self.aux_modalities:
            aux_chans = {name: self.in_chans[name] for name in self.aux_modalities}
            self.aux = ModalityEncoders(spec, aux_chans, share_weights=True, drop_path_rate=drop_path_rate)
            self.hubs = nn.ModuleList(SelfQueryHub(dim) for dim in spec.embed_dims)
            self.fusions = nn.ModuleList(RectifyFuse(dim) for dim in spec.embed_dims)
        self.decoder = SegFormerHead(spec.embed_dims, spec.decoder_dim, num_classes)
        fused_at = "fusions.{}" if self.aux_modalities else "rgb.stages.{}"
        self.feature_info = stage_feature_info(spec.embed_dims, fused_at)

    def encode(self, inputs: Mapping[str, Tensor], present: list[str]) -> FusedFeatures:
        """Encode RGB and the (zero-filled) auxiliaries, hub-fuse the auxiliaries into RGB at every stage."""
        like = inputs[present[0]]
        rgb = self.rgb.stem(self.zero_filled(inputs, "rgb", like))
        if self.aux is None:
            return FusedFeatures(stages=self.rgb.forward_from_stem(rgb))
        aux = self.aux.stem({name: self.zero_filled(inputs, name, like) for name in self.aux_modalities})
        out = FusedFeatures(stages=[])
        for index, (hub, fusion) in enumerate(zip(self.hubs, self.fusions, strict=True)):
            rgb = self.rgb.stage(index, rgb)
            aux = self.aux.stage(index, aux)
            hub_map, _ = hub(list(aux.values()))
            rgb, stage_fused = fusion(rgb, hub_map)
            out.stages.append(stage_fused)
        return out
