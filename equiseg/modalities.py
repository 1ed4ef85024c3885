"""Modality names, channel counts and the normalisation every part of equiseg agrees on.

Tensors travel between data, models and robustness code *normalised*: RGB as ``(x/255 - ImageNet mean) / std``,
every other modality scaled to [0, 1] (mean 0, std 1 in this table). So a zero tensor is mean-colour RGB and black
for the other sensors, which is exactly the "missing" of the robustness benchmark (docs/robustness.md, "Missing
modalities"). Degradations defined in image space use :func:`to_unit` / :func:`from_unit`.
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
MODALITY_MEAN: dict[str, tuple[float, ...]] = {"rgb": _IMAGENET_MEAN}
MODALITY_STD: dict[str, tuple[float, ...]] = {"rgb": _IMAGENET_STD}


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
