"""Output dataclass and the input contract shared by every registered model (docs/design.md, "Models").

Every model takes ``inputs: Mapping[str, Tensor]`` holding any non-empty subset of the modalities it was built with,
each a normalised ``(B, C, H, W)`` float tensor (``equiseg.modalities``: zero means "missing"), and returns a
:class:`SegmentationOutput`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from equiseg.modalities import channels_of

__all__ = ["SegmentationModel", "SegmentationOutput", "resolve_in_chans"]


@dataclass
class SegmentationOutput:
    """What every model returns.

    Attributes:
        logits: ``(B, K, H, W)`` class scores at the input size.
        aux_losses: already-weighted auxiliary loss terms (the SGM's); only in training mode with labels, else empty.
            The trainer adds ``sum(aux_losses.values())`` to its main loss.
        modality_weights: per stage (``"stage1"`` .. ``"stage4"``) a ``(B, N_present)`` tensor whose rows sum to 1:
            the share of each present modality (in ``model.modalities`` order) in the fused features. Empty for
            models without a modality weighting (``segformer_rgb``, ``early_fusion``).
    """

    logits: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    modality_weights: dict[str, Tensor] = field(default_factory=dict)


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


class SegmentationModel(nn.Module):
    """Base class: remembers how it was built and checks the ``inputs`` mapping against the contract.

    Subclasses implement :meth:`forward` and call :meth:`check_inputs` first. ``supports_missing_modalities`` is
    True for models that fuse only the modalities present (absent ones may be left out of ``inputs``) and False for
    those that zero-fill them internally; ``equiseg.robustness`` reads it to pick the EMM protocol.
    """

    supports_missing_modalities: bool = False

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
