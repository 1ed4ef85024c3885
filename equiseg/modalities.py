"""Modality names, channel counts and the normalisation every part of equiseg agrees on.

Tensors travel between data, models and robustness code *normalised*: ``(unit - mean) / std`` per channel, where
``unit`` is the image scaled to [0, 1]. RGB uses ImageNet's statistics; depth, thermal and HHA use the statistics of
the synthetic world (docs/data.md, "Normalisation": measured over 300 scenes at the generator's defaults), so a
Gaussian noise of sigma in normalised space is sigma times each sensor's own spread, the same severity for every
modality. Sparse sensors (event, LiDAR: 0 = no measurement) keep mean 0, std 1. A zero tensor is therefore the
mean image of a dense sensor and "no measurement" of a sparse one: the "missing" of the robustness protocols
(docs/robustness.md, "Missing modalities"). The benchmark of Liao et al. (arXiv 2503.18445) scales D/E/L by 1/255
only; we standardise dense sensors instead, so that its noise levels do not wipe out a narrow-range modality while
barely touching RGB. Degradations defined in image space use :func:`to_unit` / :func:`from_unit`.
"""

from __future__ import annotations

import torch

__all__ = [
    "KNOWN_MODALITIES",
    "MODALITY_CHANNELS",
    "MODALITY_MEAN",
    "MODALITY_STD",
    "channels_of",
    "from_unit",
    "to_unit",
]

#: Default channel count per modality name. Unknown names must be given channels explicitly.
MODALITY_CHANNELS: dict[str, int] = {
    "rgb": 3,
    "depth": 1,
    "thermal": 1,
    "event": 1,
    "lidar": 1,
    "hha": 3,
}
KNOWN_MODALITIES: tuple[str, ...] = tuple(MODALITY_CHANNELS)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: Dense non-RGB sensors: mean / std of the synthetic world in unit space (docs/data.md, "Normalisation").
MODALITY_MEAN: dict[str, tuple[float, ...]] = {
    "rgb": _IMAGENET_MEAN,
    "depth": (0.68,),
    "thermal": (0.44,),
    "hha": (0.22, 0.02, 0.04),
}
MODALITY_STD: dict[str, tuple[float, ...]] = {
    "rgb": _IMAGENET_STD,
    "depth": (0.07,),
    "thermal": (0.09,),
    "hha": (0.03, 0.09, 0.15),
}


def channels_of(modality: str) -> int:
    """Channel count of a known modality; raises ``KeyError`` listing the known ones otherwise."""
    try:
        return MODALITY_CHANNELS[modality]
    except KeyError:
        raise KeyError(
            f"unknown modality {modality!r}; known modalities: {', '.join(KNOWN_MODALITIES)} "
            "(pass in_chans explicitly for others)"
        ) from None


def _stats(modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    channels = x.shape[-3]
    mean = MODALITY_MEAN.get(modality, (0.0,) * channels)
    std = MODALITY_STD.get(modality, (1.0,) * channels)
    shape = (channels, 1, 1)
    return (
        torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape),
        torch.tensor(std, dtype=x.dtype, device=x.device).view(shape),
    )


def to_unit(x: torch.Tensor, modality: str) -> torch.Tensor:
    """Normalised tensor (..., C, H, W) -> image space in [0, 1] (not clamped)."""
    mean, std = _stats(modality, x)
    return x * std + mean


def from_unit(x: torch.Tensor, modality: str) -> torch.Tensor:
    """Image-space tensor in [0, 1] (..., C, H, W) -> normalised tensor."""
    mean, std = _stats(modality, x)
    return (x - mean) / std
