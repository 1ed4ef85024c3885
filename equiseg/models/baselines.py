"""Peers of EQUISeg in one code base, so robustness comparisons are like with like (docs/model.md, "Baselines").

* :class:`SegFormerRGB` - SegFormer (arXiv 2105.15203) on RGB alone; other inputs are accepted and ignored.
* :class:`EarlyFusion` - "equal-level concatenation": all modalities stacked along channels into one MiT.
* :class:`CMNeXtLike` - RGB-dominant, after CMNeXt (arXiv 2303.01480): an RGB branch plus one shared auxiliary
  branch, a Self-Query-Hub-like scorer that re-weights and max-fuses the auxiliary modalities, then a light
  rectify/fuse into RGB at each stage.
* :class:`MeanFusion` - AnySeg-like (arXiv 2411.17141): one shared MiT, per-stage mean over the present modalities.

``SegFormerRGB``, ``EarlyFusion`` and ``CMNeXtLike`` cannot drop a modality: an absent one is **zero-filled** (the
normalised "missing" value), as the robustness benchmark does. ``MeanFusion`` averages only what is present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equiseg.models.base import SegmentationModel, SegmentationOutput, uniform_weights
from equiseg.models.decoder import SegFormerHead
from equiseg.models.encoder import EncoderSpec, MiTBranch, ModalityEncoders

__all__ = ["CMNeXtLike", "EarlyFusion", "MeanFusion", "SegFormerRGB"]


def _upsample(logits: Tensor, height: int, width: int) -> Tensor:
    return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)


def _require_rgb(model_name: str, modalities: Sequence[str]) -> None:
    if "rgb" not in modalities:
        raise ValueError(
            f"{model_name} is built around an RGB branch, but modalities {list(modalities)} have no 'rgb'; "
            "add 'rgb' or choose a symmetric model (equiseg_*, mean_fusion_*, early_fusion_*)"
        )


class SegFormerRGB(SegmentationModel):
    """SegFormer on RGB only. Other modalities are accepted (so it runs on the same batches) and ignored."""

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
        _require_rgb(model_name, modalities)
        super().__init__(
            model_name=model_name,
            num_classes=num_classes,
            modalities=modalities,
            in_chans=in_chans,
            build_kwargs={"drop_path_rate": float(drop_path_rate)},
        )
        self.encoder = MiTBranch(spec, self.in_chans["rgb"], drop_path_rate)
        self.decoder = SegFormerHead(spec.embed_dims, spec.decoder_dim, num_classes)

    def forward(self, inputs: Mapping[str, Tensor], labels: Tensor | None = None) -> SegmentationOutput:
        """RGB (zero-filled when absent) through MiT and the all-MLP head; ``labels`` is unused."""
        present, _, height, width = self.check_inputs(inputs)
        rgb = self.zero_filled(inputs, "rgb", inputs[present[0]])
        return SegmentationOutput(logits=_upsample(self.decoder(self.encoder(rgb)), height, width))


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

    def forward(self, inputs: Mapping[str, Tensor], labels: Tensor | None = None) -> SegmentationOutput:
        """Concatenate, encode, decode; ``labels`` is unused."""
        present, _, height, width = self.check_inputs(inputs)
        like = inputs[present[0]]
        stacked = torch.cat([self.zero_filled(inputs, name, like) for name in self.modalities], dim=1)
        return SegmentationOutput(logits=_upsample(self.decoder(self.encoder(stacked)), height, width))


class MeanFusion(SegmentationModel):
    """AnySeg-like: one shared MiT (per-modality stems for ``in_chans``), per-stage mean over present modalities.

    The branches stay separate through the encoder; only the decoder input is the mean. Weight sharing is the design,
    so ``share_encoder_weights`` is not an option here.
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
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(
            model_name=model_name,
            num_classes=num_classes,
            modalities=modalities,
            in_chans=in_chans,
            build_kwargs={"drop_path_rate": float(drop_path_rate)},
        )
        self.encoders = ModalityEncoders(spec, self.in_chans, share_weights=True, drop_path_rate=drop_path_rate)
        self.decoder = SegFormerHead(spec.embed_dims, spec.decoder_dim, num_classes)

    def forward(self, inputs: Mapping[str, Tensor], labels: Tensor | None = None) -> SegmentationOutput:
        """Encode each present modality, average per stage, decode; ``labels`` is unused."""
        present, batch, height, width = self.check_inputs(inputs)
        feats = self.encoders.stem({name: inputs[name] for name in present})
        fused: list[Tensor] = []
        weights: dict[str, Tensor] = {}
        for index in range(len(self.encoders.embed_dims)):
            feats = self.encoders.stage(index, feats)
            fused.append(torch.stack(list(feats.values()), dim=0).mean(dim=0))  # (B, C_i, h_i, w_i)
            weights[f"stage{index + 1}"] = uniform_weights(batch, len(present), fused[-1])
        logits = _upsample(self.decoder(fused), height, width)
        return SegmentationOutput(logits=logits, modality_weights=weights)


class SelfQueryHub(nn.Module):
    """CMNeXt-style hub (arXiv 2303.01480, §3.2): score each auxiliary map, re-weight ``x + s*x``, element-wise max."""

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
    modality it reduces to SegFormer with the fuse layers on a zero auxiliary map.
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
        _require_rgb(model_name, modalities)
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

    def forward(self, inputs: Mapping[str, Tensor], labels: Tensor | None = None) -> SegmentationOutput:
        """Encode RGB and (zero-filled) auxiliaries, hub-fuse the auxiliaries into RGB per stage; ``labels`` unused."""
        present, _, height, width = self.check_inputs(inputs)
        like = inputs[present[0]]
        rgb = self.rgb.stem(self.zero_filled(inputs, "rgb", like))
        if self.aux is None:
            return SegmentationOutput(logits=_upsample(self.decoder(self.rgb.forward_from_stem(rgb)), height, width))
        aux = self.aux.stem({name: self.zero_filled(inputs, name, like) for name in self.aux_modalities})
        fused: list[Tensor] = []
        for index, (hub, fusion) in enumerate(zip(self.hubs, self.fusions, strict=True)):
            rgb = self.rgb.stage(index, rgb)
            aux = self.aux.stage(index, aux)
            hub_map, _ = hub(list(aux.values()))
            rgb, stage_fused = fusion(rgb, hub_map)
            fused.append(stage_fused)
        return SegmentationOutput(logits=_upsample(self.decoder(fused), height, width))
