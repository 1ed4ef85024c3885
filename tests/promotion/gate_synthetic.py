"""Synthetic robustness results shaped like ``equiseg.robustness.RobustnessResult`` (plain data only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

SINGLE_MODALITY = ("emm_only_rgb", "emm_only_depth", "emm_only_thermal")
BASE_SLICES: dict[str, float] = {
    "clean": 60.0,
    "emm_missing_rgb": 45.0,
    "emm_missing_depth": 57.0,
    "emm_missing_thermal": 56.0,
    "emm_only_rgb": 52.0,
    "emm_only_depth": 38.0,
    "emm_only_thermal": 36.0,
    "noise_high": 40.0,
}


@dataclass
class FakeSlice:
    miou: float
    ci_low: float
    ci_high: float
    per_image_miou: list[float]
    sample_ids: list[str]


@dataclass
class FakeResult:
    slices: dict[str, FakeSlice] = field(default_factory=dict)

    def summary_metrics(self) -> dict[str, float]:
        emm = [s.miou for n, s in self.slices.items() if n.startswith("emm_")]
        single = [self.slices[n].miou for n in SINGLE_MODALITY if n in self.slices]
        return {
            "clean_miou": self.slices["clean"].miou,
            "emm_avg": float(np.mean(emm)),
            "worst_slice_miou": min(s.miou for s in self.slices.values()),
            "balance_ratio": min(single) / max(single),
        }


def make_result(per_image: Mapping[str, np.ndarray], sample_ids: Sequence[str] | None = None) -> FakeResult:
    """Build a result whose slice mIoU is the mean of its per-image values."""
    slices = {}
    for name, values in per_image.items():
        values = np.asarray(values, dtype=float)
        ids = list(sample_ids) if sample_ids is not None else [f"img{i:03d}" for i in range(len(values))]
        se = values.std(ddof=1) / np.sqrt(len(values))
        m = float(values.mean())
        slices[name] = FakeSlice(m, m - 1.96 * se, m + 1.96 * se, values.tolist(), ids)
    return FakeResult(slices)


def base_per_image(n: int = 40, seed: int = 0, spread: float = 8.0) -> dict[str, np.ndarray]:
    """Per-image mIoU around :data:`BASE_SLICES`, with image difficulty shared across slices."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, spread, size=n)
    return {name: np.clip(base + difficulty + rng.normal(0, 1.0, size=n), 0, 100) for name, base in BASE_SLICES.items()}


def shifted(per_image: Mapping[str, np.ndarray], shift: Mapping[str, float] | float) -> dict[str, np.ndarray]:
    """Add a per-slice (or global) shift in mIoU points."""
    if isinstance(shift, int | float):
        return {k: v + shift for k, v in per_image.items()}
    return {k: v + shift.get(k, 0.0) for k, v in per_image.items()}
