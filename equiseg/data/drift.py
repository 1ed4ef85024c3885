"""Dataset statistics and drift between two ``stats.json`` profiles (docs/data.md, "Validation")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["drift_distances", "hist_summary"]


def hist_summary(hist: np.ndarray) -> dict[str, Any]:
    """Mean, std and a 32-bin normalised histogram from per-channel 256-bin counts in [0, 1] units."""
    centres = (np.arange(hist.shape[-1]) + 0.5) / hist.shape[-1]
    channels = []
    for counts in hist:
        total = counts.sum()
        if total == 0:
            channels.append({"mean": 0.0, "std": 0.0, "hist32": [0.0] * 32})
            continue
        mean = float((counts * centres).sum() / total)
        std = float(np.sqrt(max(0.0, (counts * (centres - mean) ** 2).sum() / total)))
        folded = counts.reshape(32, -1).sum(axis=1) / total
        channels.append({"mean": round(mean, 6), "std": round(std, 6), "hist32": [round(float(v), 6) for v in folded]})
    return {"channels": channels}


def _total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    a, b = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if a.shape != b.shape or a.sum() == 0 or b.sum() == 0:
        return 1.0
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def drift_distances(stats: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, float]:
    """Total-variation distance (0 = same, 1 = disjoint) per statistic between two ``stats.json`` profiles.

    Statistics: ``class_histogram`` and ``<modality>_intensity`` (mean over channels of the 32-bin histograms).
    Statistics absent from either profile are skipped.
    """
    distances: dict[str, float] = {}
    ours, theirs = stats.get("class_histogram", {}), reference.get("class_histogram", {})
    if ours and theirs:
        classes = sorted(set(ours) | set(theirs), key=int)
        distances["class_histogram"] = _total_variation(
            [ours.get(c, 0) for c in classes], [theirs.get(c, 0) for c in classes]
        )
    for modality, summary in stats.get("modalities", {}).items():
        ref = reference.get("modalities", {}).get(modality)
        if not ref or len(ref["channels"]) != len(summary["channels"]):
            continue
        per_channel = [
            _total_variation(a["hist32"], b["hist32"])
            for a, b in zip(summary["channels"], ref["channels"], strict=True)
        ]
        distances[f"{modality}_intensity"] = round(float(np.mean(per_channel)), 6)
    return {k: round(v, 6) for k, v in distances.items()}
