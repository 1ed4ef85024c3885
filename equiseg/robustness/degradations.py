"""Sensor degradations as pure, batched, seeded functions, registered by name (docs/robustness.md).

RGB corruptions follow ImageNet-C (Hendrycks & Dietterich, arXiv 1903.12261) in their parameters per severity
(defined there in pixels at 224 px and used here as-is, like the ``imagecorruptions`` package does for any size),
re-implemented in torch so a whole batch is corrupted at once on the model's device. Depth, thermal and sparse
(LiDAR / event) degradations model the sensor failures of DeLiVER and common depth/thermal artefacts.

Every function takes a **normalised** ``(B, C, H, W)`` tensor (``equiseg.modalities``), works in image space
``[0, 1]`` via :func:`~equiseg.modalities.to_unit` / :func:`~equiseg.modalities.from_unit`, clips there (as
ImageNet-C does) and returns a normalised tensor of the same shape, dtype and device. Severity 0 is the identity;
1-5 increase the damage. All randomness comes from the explicit ``generator`` (on the tensor's device), so a fixed
seed gives the same corruption on CPU runs, and each image of a batch gets its own draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from equiseg.modalities import from_unit, to_unit
from equiseg.robustness.imaging import depthwise_filter, gaussian_blur, jpeg_compress

__all__ = [
    "DEGRADATIONS",
    "QUICK_CORRUPTIONS",
    "DegradationSpec",
    "apply_degradation",
    "degradations_for",
    "jpeg_compress",
]

DegradeFn = Callable[[torch.Tensor, int, torch.Generator, str], torch.Tensor]
"""``fn(x_unit (B, C, H, W) in [0, 1], severity 1-5, generator, modality) -> x_unit``."""

ALL_MODALITIES = "*"
_DENSE_SENSORS = ("depth", "thermal", "hha")
_SPARSE_SENSORS = ("lidar", "event")


@dataclass(frozen=True)
class DegradationSpec:
    """A registered degradation: its function, the modalities it applies to and what it models."""

    name: str
    fn: DegradeFn
    modalities: tuple[str, ...]
    description: str
    image_space: bool = True  # False: fn works on the normalised tensor directly (e.g. whole-modality missing)

    def applies_to(self, modality: str) -> bool:
        """Whether this degradation is defined for ``modality``."""
        return ALL_MODALITIES in self.modalities or modality in self.modalities


def _rand(x: torch.Tensor, generator: torch.Generator, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    return torch.rand(shape or tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype)


def _randn(x: torch.Tensor, generator: torch.Generator, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    return torch.randn(shape or tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype)


def _pick(params: tuple[float, ...], severity: int) -> float:
    return params[severity - 1]


# --------------------------------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------------------------------

_GAUSSIAN_SIGMA = {"rgb": (0.08, 0.12, 0.18, 0.26, 0.38)}  # ImageNet-C gaussian_noise
_SENSOR_SIGMA = (0.02, 0.04, 0.06, 0.10, 0.15)  # depth / thermal / HHA read-out noise


def _gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    sigma = _pick(_GAUSSIAN_SIGMA.get(modality, _SENSOR_SIGMA), severity)
    return x + sigma * _randn(x, generator)


def _shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    photons = _pick((60.0, 25.0, 12.0, 5.0, 3.0), severity)  # ImageNet-C shot_noise
    return torch.poisson(x.clamp(0, 1) * photons, generator=generator) / photons


def _impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    amount = _pick((0.03, 0.06, 0.09, 0.17, 0.27), severity)  # ImageNet-C impulse_noise (s&p per element)
    hit = _rand(x, generator) < amount
    salt = _rand(x, generator) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _fixed_pattern_noise(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """Microbolometer column offsets (stripes) plus a weaker per-pixel gain pattern."""
    sigma = _pick((0.02, 0.04, 0.07, 0.10, 0.15), severity)
    b, c, _, w = x.shape
    columns = sigma * _randn(x, generator, (b, c, 1, w))
    gain = 1.0 + 0.5 * sigma * _randn(x, generator)
    return x * gain + columns


# --------------------------------------------------------------------------------------------------------------------
# Blur and resolution
# --------------------------------------------------------------------------------------------------------------------


def _defocus_blur(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]  # ImageNet-C defocus_blur
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    disk = ((t.view(-1, 1) ** 2 + t.view(1, -1) ** 2) <= radius**2).to(x.dtype)
    disk = disk / disk.sum()
    return gaussian_blur(depthwise_filter(x, disk), alias)


def _motion_blur(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """One-sided linear motion blur with Gaussian tap weights and a random angle in [-45, 45] deg per image."""
    radius, sigma = ((10, 3.0), (15, 5.0), (15, 8.0), (15, 12.0), (20, 15.0))[severity - 1]  # ImageNet-C
    b, _, h, w = x.shape
    angle = (_rand(x, generator, (b,)) * 90.0 - 45.0) * (math.pi / 180.0)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0).expand(b, h, w, 2)
    step = torch.stack((torch.cos(angle) * 2.0 / max(w - 1, 1), torch.sin(angle) * 2.0 / max(h - 1, 1)), dim=-1)
    out = torch.zeros_like(x)
    total = 0.0
    for tap in range(radius + 1):
        weight = math.exp(-0.5 * (tap / sigma) ** 2)
        grid = base + (tap * step).view(b, 1, 1, 2)
        out = out + weight * F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
        total += weight
    return out / total


def _pixelate(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    factor = _pick((0.6, 0.5, 0.4, 0.3, 0.25), severity)  # ImageNet-C pixelate (box down, box up)
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * factor)), max(1, int(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


def _low_resolution(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """Sensor at 1/f resolution (DeLiVER's ``eventlowres``): area-averaged to 1/f, blown up with nearest pixels."""
    factor = int(_pick((2, 3, 4, 6, 8), severity))
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, h // factor), max(1, w // factor)), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


# --------------------------------------------------------------------------------------------------------------------
# Photometric and weather
# --------------------------------------------------------------------------------------------------------------------


def _overexposure(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """ImageNet-C brightness: raise HSV value V by c keeping hue and saturation (rgb scales by (V + c) / V)."""
    shift = _pick((0.1, 0.2, 0.3, 0.4, 0.5), severity)
    value = x.amax(dim=1, keepdim=True).clamp_min(1e-6)
    return x * ((value + shift).clamp(max=1.0) / value)


def _underexposure(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """Too little light: exposure scaled down, plus the read-out noise a dark frame carries."""
    gain = _pick((0.6, 0.45, 0.3, 0.2, 0.12), severity)
    sigma = _pick((0.005, 0.01, 0.015, 0.02, 0.03), severity)
    return x * gain + sigma * _randn(x, generator)


def _contrast(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    table = (0.4, 0.3, 0.2, 0.1, 0.05) if modality == "rgb" else (0.6, 0.45, 0.3, 0.2, 0.1)  # ImageNet-C for rgb
    c = _pick(table, severity)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * c + mean


def _fractal_field(x: torch.Tensor, decay: float, generator: torch.Generator) -> torch.Tensor:
    """Per-image smooth random field in [0, 1]: octaves of upsampled uniform noise, amplitude ``decay**-octave``."""
    b, _, h, w = x.shape
    octaves = max(1, math.ceil(math.log2(max(h, w))))
    field = torch.zeros((b, 1, h, w), device=x.device, dtype=x.dtype)
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        noise = _rand(x, generator, (b, 1, cells + 1, cells + 1))
        field = field + decay ** (-octave) * F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=True)
    low = field.amin(dim=(-2, -1), keepdim=True)
    high = field.amax(dim=(-2, -1), keepdim=True)
    return (field - low) / (high - low).clamp_min(1e-6)


def _fog(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """ImageNet-C fog: add a fractal haze of strength c0 and rescale by max / (max + c0)."""
    # ImageNet-C values, except severity 4 whose strength rises 2.5 -> 2.75 so damage grows monotonically
    strength, decay = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.75, 1.5), (3.0, 1.4))[severity - 1]
    peak = x.amax(dim=(-3, -2, -1), keepdim=True)
    hazy = x + strength * _fractal_field(x, decay, generator)
    return hazy * peak / (peak + strength)


def _jpeg(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    quality = int(_pick((25, 18, 15, 10, 7), severity))  # ImageNet-C jpeg_compression
    return jpeg_compress(x, quality)


# --------------------------------------------------------------------------------------------------------------------
# Depth / thermal / sparse sensors
# --------------------------------------------------------------------------------------------------------------------


def _holes(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """Invalid-measurement blobs (specular / absorbing surfaces, parallax): a share of pixels set to 0."""
    share = _pick((0.05, 0.10, 0.20, 0.30, 0.45), severity)
    b, _, h, w = x.shape
    coarse = _rand(x, generator, (b, 1, max(2, h // 8), max(2, w // 8)))
    field = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    field = field + 0.05 * _rand(x, generator, (b, 1, h, w))  # ragged blob borders
    flat = field.view(b, -1)
    rank = max(1, int(share * flat.shape[1]))  # kthvalue, not quantile: quantile refuses inputs over 2^24 values
    threshold = torch.kthvalue(flat, rank, dim=1).values.view(b, 1, 1, 1)
    return x * (field > threshold).to(x.dtype)


def _quantisation(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    levels = _pick((64.0, 32.0, 16.0, 8.0, 4.0), severity)
    return torch.round(x.clamp(0, 1) * (levels - 1)) / (levels - 1)


def _flying_pixels(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """Mixed-pixel artefacts at depth edges: edge pixels take a random depth between their neighbours'."""
    probability = _pick((0.15, 0.3, 0.45, 0.6, 0.8), severity)
    width = int(_pick((1, 1, 2, 2, 3), severity))
    kernel = 2 * width + 1
    local_max = F.max_pool2d(x, kernel, stride=1, padding=width)
    local_min = -F.max_pool2d(-x, kernel, stride=1, padding=width)
    spread = local_max - local_min
    edge = spread > 0.05
    hit = edge & (_rand(x, generator) < probability)
    mixed = local_min + _rand(x, generator) * spread
    return torch.where(hit, mixed, x)


def _sparsity(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """Fewer returns / events: every element dropped (set to 0) with probability p."""
    drop = _pick((0.2, 0.4, 0.6, 0.75, 0.9), severity)
    return x * (_rand(x, generator) >= drop).to(x.dtype)


def _jitter(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """Calibration / timing jitter: each pixel reads a neighbour displaced by rounded N(0, sigma^2) pixels per axis."""
    sigma = _pick((0.5, 1.0, 1.5, 2.0, 3.0), severity)
    b, c, h, w = x.shape
    dy = torch.round(sigma * _randn(x, generator, (b, 1, h, w))).long()
    dx = torch.round(sigma * _randn(x, generator, (b, 1, h, w))).long()
    rows = (torch.arange(h, device=x.device).view(1, 1, h, 1) + dy).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, 1, w) + dx).clamp(0, w - 1)
    index = (rows * w + cols).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, h * w), 2, index).view(b, c, h, w)


def _missing(x: torch.Tensor, severity: int, generator: torch.Generator, modality: str) -> torch.Tensor:
    """The whole modality missing: zero in normalised space (mean-colour RGB, black elsewhere)."""
    return torch.zeros_like(x)


def _spec(
    name: str, fn: DegradeFn, modalities: tuple[str, ...], description: str, image: bool = True
) -> DegradationSpec:
    return DegradationSpec(name, fn, modalities, description, image)


#: Registry: name -> :class:`DegradationSpec`. ``equiseg robustness`` reports and the full suite iterate over it.
DEGRADATIONS: dict[str, DegradationSpec] = {
    spec.name: spec
    for spec in (
        _spec("gaussian_noise", _gaussian_noise, ("rgb", *_DENSE_SENSORS), "additive Gaussian noise"),
        _spec("shot_noise", _shot_noise, ("rgb",), "Poisson photon noise"),
        _spec("impulse_noise", _impulse_noise, ("rgb",), "salt-and-pepper per element"),
        _spec("defocus_blur", _defocus_blur, ("rgb",), "disk blur (out of focus)"),
        _spec("motion_blur", _motion_blur, ("rgb",), "linear motion blur at a random angle"),
        _spec("underexposure", _underexposure, ("rgb",), "dark frame (DeLiVER sensor failure)"),
        _spec("overexposure", _overexposure, ("rgb",), "HSV value raised (DeLiVER sensor failure)"),
        _spec("fog", _fog, ("rgb",), "fractal haze"),
        _spec("contrast", _contrast, ("rgb", "thermal"), "contrast reduced towards the image mean"),
        _spec("jpeg", _jpeg, ("rgb",), "JPEG compression artefacts"),
        _spec("pixelate", _pixelate, ("rgb",), "box down- and up-sampling"),
        _spec("holes", _holes, ("depth", "thermal", "hha"), "invalid-measurement blobs set to 0"),
        _spec("quantisation", _quantisation, ("depth", "hha"), "coarse depth steps"),
        _spec("flying_pixels", _flying_pixels, ("depth", "hha"), "mixed depths at object edges"),
        _spec("low_resolution", _low_resolution, ("depth", "hha", "lidar", "event"), "sensor at lower resolution"),
        _spec("fixed_pattern_noise", _fixed_pattern_noise, ("thermal",), "column stripes and gain pattern"),
        _spec("sparsity", _sparsity, _SPARSE_SENSORS, "returns / events dropped"),
        _spec("jitter", _jitter, _SPARSE_SENSORS, "points displaced to random neighbours"),
        _spec("missing", _missing, (ALL_MODALITIES,), "whole modality missing (zero-filled)", image=False),
    )
}

#: Key corruptions per modality evaluated by the ``quick`` suite.
QUICK_CORRUPTIONS: dict[str, tuple[str, ...]] = {
    "rgb": ("gaussian_noise", "motion_blur", "fog", "underexposure"),
    "depth": ("holes", "gaussian_noise"),
    "hha": ("holes", "gaussian_noise"),
    "thermal": ("gaussian_noise", "contrast"),
    "lidar": ("sparsity",),
    "event": ("sparsity",),
}


def degradations_for(modality: str) -> list[str]:
    """Names of the registered degradations defined for ``modality``."""
    return [name for name, spec in DEGRADATIONS.items() if spec.applies_to(modality)]


def apply_degradation(
    name: str, x: torch.Tensor, *, modality: str, severity: int, generator: torch.Generator
) -> torch.Tensor:
    """Degrade a normalised ``(B, C, H, W)`` tensor of ``modality`` at ``severity`` (0 = identity, 1-5).

    Raises:
        KeyError: unknown degradation name (the message lists the registered ones).
        ValueError: severity outside 0-5, a modality the degradation is not defined for, or a wrong shape.
    """
    try:
        spec = DEGRADATIONS[name]
    except KeyError:
        raise KeyError(f"unknown degradation {name!r}; registered degradations: {', '.join(DEGRADATIONS)}") from None
    if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an int in 0-5 (0 = identity), got {severity!r}")
    if not spec.applies_to(modality):
        raise ValueError(
            f"degradation {name!r} is defined for {', '.join(spec.modalities)}, not {modality!r}; "
            f"degradations for {modality!r}: {', '.join(degradations_for(modality)) or '(none)'}"
        )
    if x.dim() != 4:
        raise ValueError(f"expected a batched (B, C, H, W) tensor, got shape {tuple(x.shape)}; add x.unsqueeze(0)")
    if severity == 0:
        return x
    dtype = x.dtype
    work = x.float()
    if not spec.image_space:
        return spec.fn(work, severity, generator, modality).to(dtype)
    unit = to_unit(work, modality)
    degraded = spec.fn(unit, severity, generator, modality).clamp(0.0, 1.0)
    return from_unit(degraded, modality).to(dtype)
