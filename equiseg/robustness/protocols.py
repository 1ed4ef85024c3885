"""Missing- and noisy-modality protocols of the robustness benchmark (Liao et al., arXiv 2503.18445).

For N modalities M:

- **EMM** (entire-missing modality): every missing set S with 0 <= |S| <= N-1 (2^N - 1 cases; all-missing is
  excluded) is removed for the whole split. ``Avg`` is the plain mean of the 2^N - 1 mIoUs; ``E(p)`` weights set S
  by ``p^|S| (1-p)^(N-|S|)`` (each modality fails independently with probability p), renormalised over the
  admissible sets.
- **RMM** (random-missing modality) at ratio r: same sets, but each element (pixel *and* channel) of a "missing"
  modality is zeroed independently with probability r.
- **NM** (noisy modality) at level low / mid / high: salt-and-pepper of density d = 0.05 / 0.10 / 0.20 on every
  modality (ceil(d * numel / 2) random elements set to the tensor's max, as many to its min), then Gaussian noise
  sigma = 0.1 / 0.2 / 0.5 on every modality except events, in normalised space.

The benchmark's scripts are unseeded; here every mask and noise draw comes from an explicit ``torch.Generator``.
Salt-and-pepper is applied per sample (numel and min/max of each sample), so results do not depend on batch size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "EMM_P_VALUES",
    "NM_LEVELS",
    "RMM_RATIOS",
    "NoiseLevel",
    "apply_noisy_modalities",
    "apply_random_missing",
    "expected_miou",
    "kept_subsets",
    "missing_sets",
    "missing_weights",
    "remove_modalities",
    "subset_key",
]

#: Failure probabilities of the E(p) aggregate.
EMM_P_VALUES: tuple[float, ...] = (0.2, 0.1, 0.05)
#: Element-wise missing ratios of RMM.
RMM_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class NoiseLevel:
    """One NM level: salt-and-pepper density on every modality, then Gaussian sigma on all but events."""

    salt_pepper_density: float
    gaussian_sigma: float


#: NM levels of the benchmark (``val_mm_NM.py``).
NM_LEVELS: dict[str, NoiseLevel] = {
    "low": NoiseLevel(0.05, 0.1),
    "mid": NoiseLevel(0.10, 0.2),
    "high": NoiseLevel(0.20, 0.5),
}
#: Modalities that get no Gaussian term in NM (event streams are not Gaussian-noised in the benchmark).
NM_NO_GAUSSIAN: frozenset[str] = frozenset({"event"})


def subset_key(modalities: Sequence[str]) -> str:
    """Stable, MLflow-safe name of a modality set, e.g. ``("rgb", "depth") -> "rgb-depth"``."""
    return "-".join(modalities)


def missing_sets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """All missing sets S with 0 <= |S| <= N-1, smallest first, modality order preserved (2^N - 1 of them)."""
    mods = tuple(modalities)
    if not mods:
        raise ValueError("at least one modality is needed")
    if len(set(mods)) != len(mods):
        raise ValueError(f"modalities must be unique, got {mods}")
    return [combo for size in range(len(mods)) for combo in itertools.combinations(mods, size)]


def kept_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """All non-empty kept subsets (complements of :func:`missing_sets`, same order: full set first)."""
    mods = tuple(modalities)
    return [tuple(m for m in mods if m not in missing) for missing in missing_sets(mods)]


def missing_weights(modalities: Sequence[str], p: float) -> dict[tuple[str, ...], float]:
    """E(p) weight of every missing set: ``p^|S| (1-p)^(N-|S|)`` renormalised over the 2^N - 1 admissible sets."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"failure probability p must be in [0, 1), got {p}")
    n = len(modalities)
    raw = {s: p ** len(s) * (1.0 - p) ** (n - len(s)) for s in missing_sets(modalities)}
    total = math.fsum(raw.values())
    return {s: w / total for s, w in raw.items()}


def expected_miou(miou_by_missing: Mapping[tuple[str, ...], float], modalities: Sequence[str], p: float) -> float:
    """E(p) aggregate: weighted mean of per-missing-set mIoUs (keys are missing sets, see :func:`missing_sets`)."""
    weights = missing_weights(modalities, p)
    absent = [s for s in weights if s not in miou_by_missing]
    if absent:
        raise KeyError(f"missing-set results needed for E(p) are absent: {absent}")
    return math.fsum(weights[s] * miou_by_missing[s] for s in weights)


def remove_modalities(
    inputs: Mapping[str, torch.Tensor], missing: Sequence[str], mode: str = "zero"
) -> dict[str, torch.Tensor]:
    """EMM input: the ``missing`` modalities zero-filled (``mode="zero"``) or left out of the dict (``"drop"``)."""
    if mode not in ("zero", "drop"):
        raise ValueError(f"missing mode must be 'zero' or 'drop', got {mode!r}")
    unknown = [m for m in missing if m not in inputs]
    if unknown:
        raise KeyError(f"cannot remove {unknown}: the batch holds {sorted(inputs)}")
    if len(set(missing)) >= len(inputs):
        raise ValueError("removing every modality is not an admissible EMM case (all-missing is excluded)")
    if mode == "drop":
        return {m: x for m, x in inputs.items() if m not in missing}
    return {m: (torch.zeros_like(x) if m in missing else x) for m, x in inputs.items()}


def apply_random_missing(
    inputs: Mapping[str, torch.Tensor], missing: Sequence[str], ratio: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """RMM input: every element of each ``missing`` modality is zeroed independently with probability ``ratio``."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"RMM ratio must be in [0, 1], got {ratio}")
    out = dict(inputs)
    for m in inputs:  # iterate in dict order so the random stream does not depend on the order of ``missing``
        if m in missing:
            x = inputs[m]
            keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= ratio
            out[m] = x * keep
    return out


def salt_and_pepper(x: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """Per sample of ``(B, ...)``: ceil(d * numel / 2) random elements to the sample's max, as many to its min."""
    if density <= 0:
        return x
    batch = x.shape[0]
    flat = x.reshape(batch, -1).clone()
    count = math.ceil(density * flat.shape[1] / 2)
    high = flat.amax(dim=1, keepdim=True).expand(batch, count)
    low = flat.amin(dim=1, keepdim=True).expand(batch, count)
    salt = torch.randint(0, flat.shape[1], (batch, count), generator=generator, device=x.device)
    pepper = torch.randint(0, flat.shape[1], (batch, count), generator=generator, device=x.device)
    flat.scatter_(1, salt, high)
    flat.scatter_(1, pepper, low)
    return flat.view_as(x)


def apply_noisy_modalities(
    inputs: Mapping[str, torch.Tensor], level: str | NoiseLevel, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """NM input at ``level`` (``"low" | "mid" | "high"`` or a :class:`NoiseLevel`) on every modality."""
    if isinstance(level, str):
        try:
            level = NM_LEVELS[level]
        except KeyError:
            raise KeyError(f"unknown NM level {level!r}; valid levels: {', '.join(NM_LEVELS)}") from None
    out: dict[str, torch.Tensor] = {}
    for m, x in inputs.items():
        noisy = salt_and_pepper(x, level.salt_pepper_density, generator)
        if m not in NM_NO_GAUSSIAN and level.gaussian_sigma > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noisy = noisy + level.gaussian_sigma * noise
        out[m] = noisy
    return out
