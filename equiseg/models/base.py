"""The base model, its output dataclass and the input contract shared by every registered model (docs/model.md).

Every model takes ``inputs: Mapping[str, Tensor]`` holding any non-empty subset of the modalities it was built with,
each a normalised ``(B, C, H, W)`` float tensor (``equiseg.modalities``: zero means "missing"), and returns a
:class:`SegmentationOutput`. :class:`SegmentationModel` writes ``forward`` once: check the inputs, encode and fuse
(the subclass's :meth:`~SegmentationModel.encode`), decode, resize to the input, add the training-only losses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equiseg.modalities import channels_of

__all__ = [
    "FusedFeatures",
    "SegmentationModel",
    "SegmentationOutput",
    "require_rgb",
    "resolve_in_chans",
    "stage_feature_info",
    "uniform_weights",
]


@dataclass
class SegmentationOutput:
    """What every model returns.

    Attributes:
        logits: ``(B, K, H, W)`` class scores at the input size.
        aux_losses: already-weighted auxiliary loss terms (the SGM's); only in training mode with labels, else empty.
            The trainer adds ``sum(aux_losses.values())`` to its main loss.
        modality_weights: per stage (``"stage1"`` .. ``"stage4"``) a ``(B, N_present)`` tensor whose rows sum to 1:
            the share of each present modality (in ``model.modalities`` order) in the fused features (for a
            per-position selection, its mean over positions). Empty for models without a modality weighting
            (``segformer_rgb``, ``early_fusion``, ``cmnext_like``).
        selection_maps: per stage the per-position weights ``(B, N_present, h_i, w_i)`` (sum 1 over N) of models
            that select per position (``equiseg*``); empty otherwise.
        contribution: the SGM's label-free per-position contribution estimates ``(B, N_present, H/4, W/4)`` (sum 1
            over N), which weigh the fusion; None for models without an SGM.
    """

    logits: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    modality_weights: dict[str, Tensor] = field(default_factory=dict)
    selection_maps: dict[str, Tensor] = field(default_factory=dict)
    contribution: Tensor | None = None


def resolve_in_chans(modalities: Sequence[str], in_chans: Mapping[str, int] | None) -> dict[str, int]:
    """Channels per modality: explicit ``in_chans`` first, else the defaults of ``equiseg.modalities``."""
    if isinstance(modalities, str):
        raise TypeError(
            f"modalities must be a sequence of names such as ('rgb', 'depth'), got the string {modalities!r}"
        )
    names = tuple(modalities)
    if not names:
        raise ValueError("modalities is empty; give at least one modality name, e.g. modalities=('rgb', 'depth')")
    if len(set(names)) != len(names):
        raise ValueError(f"modalities {names} contain duplicates; list each modality once")
    given = dict(in_chans or {})
    extra = sorted(set(given) - set(names))
    if extra:
        raise ValueError(f"in_chans names {extra} that are not in modalities {names}; remove them or add the modality")
    resolved = {name: int(given[name]) if name in given else channels_of(name) for name in names}
    bad = {name: c for name, c in resolved.items() if c < 1}
    if bad:
        raise ValueError(f"in_chans must be >= 1 for every modality, got {bad}")
    return resolved


@dataclass
class FusedFeatures:
    """What a model's encoder and fusion hand to its decoder (:meth:`SegmentationModel.encode`).

    Attributes:
        stages: the four fused maps ``(B, C_i, H/2^(i+2), W/2^(i+2))`` the decoder reads (``feature_info`` order).
        modality_weights: as :attr:`SegmentationOutput.modality_weights`.
        per_modality: per stage, the branch outputs ``{modality: (B, C_i, h_i, w_i)}`` of the present modalities
            (what the SGM reads); empty for models without per-modality branches at every stage.
        selection_maps: as :attr:`SegmentationOutput.selection_maps`.
        aux_logits: the SGM heads' per-modality logits ``{modality: (B, K, H/4, W/4)}``; empty without an SGM.
        contribution: as :attr:`SegmentationOutput.contribution`.
    """

    stages: list[Tensor]
    modality_weights: dict[str, Tensor] = field(default_factory=dict)
    per_modality: list[dict[str, Tensor]] = field(default_factory=list)
    selection_maps: dict[str, Tensor] = field(default_factory=dict)
    aux_logits: dict[str, Tensor] = field(default_factory=dict)
    contribution: Tensor | None = None


def stage_feature_info(embed_dims: Sequence[int], module: str) -> list[dict[str, Any]]:
    """timm-style ``feature_info`` of the four fused stages: ``module`` is a format string with ``{}`` = index."""
    return [
        {"num_chs": int(dim), "reduction": 4 * 2**index, "module": module.format(index)}
        for index, dim in enumerate(embed_dims)
    ]


def require_rgb(model_name: str, modalities: Sequence[str]) -> None:
    """Raise for a model built around an RGB branch when ``modalities`` has no ``"rgb"``."""
    if "rgb" not in modalities:
        raise ValueError(
            f"{model_name} is built around an RGB branch, but modalities {list(modalities)} have no 'rgb'; "
            "add 'rgb' or choose a symmetric model (equiseg_*, mean_fusion_*, early_fusion_*)"
        )


class SegmentationModel(nn.Module):
    """Base class: ``forward`` composes encoder + fusion (:meth:`encode`), the decoder and the auxiliary losses.

    As in segmentation_models_pytorch's ``SegmentationModel``, ``forward`` is written once here; a subclass builds
    its modules, sets ``self.decoder`` (four maps -> ``(B, K, H/4, W/4)`` logits) and ``self.feature_info``, and
    implements :meth:`encode`. Models with training-only losses override :meth:`auxiliary_losses`.
    ``supports_missing_modalities`` is True for models that fuse only the modalities present (absent ones may be
    left out of ``inputs``) and False for those that zero-fill them internally; ``equiseg.robustness`` reads it to
    pick the EMM protocol.
    """

    supports_missing_modalities: bool = False
    decoder: nn.Module
    #: timm-style description of the fused stages fed to the decoder: ``num_chs``, ``reduction``, ``module``.
    feature_info: list[dict[str, Any]]

    def __init__(
        self,
        *,
        model_name: str,
        num_classes: int,
        modalities: Sequence[str],
        in_chans: Mapping[str, int] | None,
        build_kwargs: Mapping[str, Any],
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.model_name = model_name
        self.num_classes = int(num_classes)
        self.in_chans: dict[str, int] = resolve_in_chans(modalities, in_chans)
        self.modalities: tuple[str, ...] = tuple(self.in_chans)
        self.build_kwargs: dict[str, Any] = {
            "num_classes": self.num_classes,
            "modalities": list(self.modalities),
            "in_chans": dict(self.in_chans),
            **dict(build_kwargs),
        }

    def encode(self, inputs: Mapping[str, Tensor], present: list[str]) -> FusedFeatures:
        """Encoder and fusion: checked ``inputs`` (``present`` in ``self.modalities`` order) -> fused features."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode(inputs, present)")

    def auxiliary_losses(self, features: FusedFeatures, labels: Tensor, size: tuple[int, int]) -> dict[str, Tensor]:
        """Weighted training-only loss terms from ``features`` and ``(B, H, W)`` labels; none by default."""
        return {}

    def forward_features(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """The four fused maps the decoder reads, shaped as :attr:`feature_info` says."""
        present, *_ = self.check_inputs(inputs)
        return self.encode(inputs, present).stages

    def forward(self, inputs: Mapping[str, Tensor], labels: Tensor | None = None) -> SegmentationOutput:
        """Segment ``inputs`` (any non-empty subset of ``self.modalities``); ``labels`` only feed training losses."""
        present, _, height, width = self.check_inputs(inputs)
        features = self.encode(inputs, present)
        logits = self.decoder(features.stages)  # (B, K, H/4, W/4)
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        aux: dict[str, Tensor] = {}
        if self.training and labels is not None:
            aux = self.auxiliary_losses(features, labels, (height, width))
        return SegmentationOutput(
            logits=logits,
            aux_losses=aux,
            modality_weights=features.modality_weights,
            selection_maps=features.selection_maps,
            contribution=features.contribution,
        )

    def check_inputs(self, inputs: Mapping[str, Tensor]) -> tuple[list[str], int, int, int]:
        """Validate ``inputs``; return the present modalities (in ``self.modalities`` order), batch, height, width.

        Raises:
            ValueError: empty mapping, a modality the model was not built with, or tensors whose shapes disagree.
        """
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{self.model_name} expects a mapping modality -> (B, C, H, W) tensor, got {type(inputs)}")
        if not inputs:
            raise ValueError(
                f"{self.model_name} got no inputs; pass at least one of its modalities {list(self.modalities)}"
            )
        unknown = [name for name in inputs if name not in self.in_chans]
        if unknown:
            raise ValueError(
                f"{self.model_name} was built for modalities {list(self.modalities)} and cannot take {unknown}; "
                "drop those inputs, or build (and train) a model with them, e.g. "
                f"create_model({self.model_name!r}, modalities={[*self.modalities, *unknown]}, ...)"
            )
        present = [name for name in self.modalities if name in inputs]
        first = inputs[present[0]]
        if first.dim() != 4:
            raise ValueError(f"input {present[0]!r} must be (B, C, H, W), got shape {tuple(first.shape)}")
        batch, _, height, width = first.shape
        for name in present:
            x = inputs[name]
            expected = (batch, self.in_chans[name], height, width)
            if x.dim() != 4 or tuple(x.shape) != expected:
                raise ValueError(
                    f"input {name!r} has shape {tuple(x.shape)}, expected {expected} "
                    f"({self.in_chans[name]} channels; all modalities share batch and spatial size)"
                )
        return present, int(batch), int(height), int(width)

    def zero_filled(self, inputs: Mapping[str, Tensor], name: str, like: Tensor) -> Tensor:
        """The input of ``name`` or, when absent, zeros (the normalised "missing" value of ``equiseg.modalities``)."""
        if name in inputs:
            return inputs[name]
        batch, _, height, width = like.shape
        return like.new_zeros(batch, self.in_chans[name], height, width)

    def extra_repr(self) -> str:
        return f"model_name={self.model_name!r}, num_classes={self.num_classes}, modalities={self.modalities}"


def uniform_weights(batch: int, count: int, like: Tensor) -> Tensor:
    """``(B, N)`` rows of ``1 / N``: the weights of a plain mean over ``N`` modalities."""
    return torch.full((batch, count), 1.0 / count, dtype=like.dtype, device=like.device)
