"""Two-level bootstrap for multi-seed model comparisons (docs/results.md, "Method").

A model's score varies with the training seed *and* with the test images. With a handful of seeds, a CI from
seeds alone is too wide to say anything and a CI from images alone pretends the seed does not matter, so each
replicate resamples both, hierarchically:

1. one multinomial draw of test-image weights, **shared by every model and seed** (all are scored on the same
   images, so comparisons stay paired on images);
2. per model, ``S`` seeds drawn with replacement from its ``S`` runs.

A replicate's metric is the mean over the drawn seeds of the metric computed on the re-weighted images. Metrics are
dataset-level: the per-image confusion matrices of every slice are summed with the image weights and turned into
mIoU exactly as the evaluation does, then aggregated into EMM / RMM / NM / corruption / balance figures by
:func:`equiseg.robustness.runner.aggregate_slices`, the function the evaluation itself uses. Intervals are
percentile intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from equiseg.experiments.significance import percentile_interval
from equiseg.robustness.metrics import miou
from equiseg.robustness.result import SliceResult
from equiseg.robustness.runner import aggregate_slices

__all__ = [
    "Estimate",
    "cell_replicates",
    "headline_metrics",
    "image_weights",
    "percentile_interval",
    "seed_bootstrap",
]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile bootstrap interval (mIoU points unless the metric is a ratio)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def headline_metrics(aggregates: Mapping[str, Any]) -> dict[str, float]:
    """The figures the claim is judged on, from ``RobustnessResult.aggregates`` (or a bootstrap replicate's).

    Keys: ``clean``, ``emm_avg``, ``emm_min``, ``emm/<kept>`` per kept subset, ``single_<m>`` (only ``m`` kept),
    ``balance_ratio``, ``rmm_avg`` (mean over ratios), ``nm_avg`` (mean over levels), ``miou_c`` and
    ``miou_c_<m>`` per corrupted modality, and ``sev<k>_<m>`` (mean over degradations at severity ``k``).
    """
    out: dict[str, float] = {"clean": float(aggregates["clean_miou"])}
    emm = aggregates.get("emm") or {}
    if emm:
        out["emm_avg"] = float(emm["avg"])
        out["emm_min"] = float(emm["min"])
        for kept, value in emm["by_kept"].items():
            out[f"emm/{kept}"] = float(value)
    balance = aggregates.get("balance") or {}
    if balance:
        out["balance_ratio"] = float(balance["min_max_ratio"])
        for modality, value in balance["single"].items():
            out[f"single_{modality}"] = float(value)
    rmm = aggregates.get("rmm") or {}
    if rmm:
        out["rmm_avg"] = math.fsum(float(r["avg"]) for r in rmm.values()) / len(rmm)
    nm = aggregates.get("nm") or {}
    if nm:
        out["nm_avg"] = math.fsum(float(v) for v in nm.values()) / len(nm)
    corruption = aggregates.get("corruption") or {}
    if corruption.get("miou_c") is not None:
        out["miou_c"] = float(corruption["miou_c"])
        for modality, value in corruption["per_modality_miou_c"].items():
            out[f"miou_c_{modality}"] = float(value)
        for modality, rows in corruption["matrix"].items():
            by_severity: dict[str, list[float]] = {}
            for row in rows.values():
                for severity, value in row.items():
                    by_severity.setdefault(severity, []).append(float(value))
            for severity, values in by_severity.items():
                out[f"sev{severity}_{modality}"] = math.fsum(values) / len(values)
    return out


def image_weights(num_images: int, replicates: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``(replicates, num_images)`` multinomial image counts: one bootstrap resample of the test set per row."""
    if num_images < 1:
        raise ValueError("the bootstrap needs at least one test image")
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=replicates).astype(np.float64)


def cell_replicates(
    confusion: Mapping[str, NDArray[np.integer]],
    slices: Mapping[str, SliceResult],
    modalities: Sequence[str],
    weights: NDArray[np.float64],
    *,
    absent_as_zero: bool,
) -> list[dict[str, float]]:
    """:func:`headline_metrics` of one trained model for every row of ``weights`` (one dict per replicate).

    Args:
        confusion: slice name -> ``(N, K, K)`` per-image confusion matrices (``RobustnessResult.load_confusion``).
        slices: the evaluation's slices (their kinds and parameters; condition slices are ignored).
        modalities: the evaluated modalities, in order.
        weights: ``(B, N)`` image counts from :func:`image_weights`, shared by every model compared.
        absent_as_zero: the evaluation's mIoU convention.
    """
    names = [name for name, sl in slices.items() if sl.kind != "cond"]
    missing = [name for name in names if name not in confusion]
    if missing:
        raise ValueError(f"no per-image confusion matrices for slices {missing[:3]}...; re-run the evaluation")
    replicate_miou: dict[str, NDArray[np.float64]] = {}
    for name in names:
        hist = confusion[name]
        if hist.shape[0] != weights.shape[1]:
            raise ValueError(f"slice {name} has {hist.shape[0]} images, the weights {weights.shape[1]}")
        k = hist.shape[-1]
        summed = weights @ hist.reshape(hist.shape[0], k * k).astype(np.float64)
        replicate_miou[name] = np.asarray(miou(summed.reshape(-1, k, k), absent_as_zero), dtype=np.float64)
    # one reusable set of stand-in slices: aggregate_slices reads only name, kind, params and miou
    stand_ins = {
        name: SliceResult(name, slices[name].kind, 0.0, math.nan, math.nan, [], [], [], slices[name].params)
        for name in names
    }
    mods = tuple(modalities)
    out = []
    for b in range(weights.shape[0]):
        for name, stand_in in stand_ins.items():
            stand_in.miou = float(replicate_miou[name][b])
        out.append(headline_metrics(aggregate_slices(stand_ins, mods, {}, with_protocols=len(stand_ins) > 1)))
    return out


def _as_matrix(replicates: Sequence[Mapping[str, float]], keys: Sequence[str]) -> NDArray[np.float64]:
    return np.array([[r.get(k, math.nan) for k in keys] for r in replicates], dtype=np.float64)


def seed_bootstrap(
    per_seed: Sequence[Sequence[Mapping[str, float]]], keys: Sequence[str], rng: np.random.Generator
) -> NDArray[np.float64]:
    """Second level: ``(B, len(keys))`` replicates of a model's seed-mean.

    Args:
        per_seed: per seed, the :func:`cell_replicates` of that run (all built on the same image weights).
        keys: metrics to keep.
        rng: draws, per replicate, ``S`` seeds with replacement.
    """
    stacked = np.stack([_as_matrix(reps, keys) for reps in per_seed])  # (S, B, M)
    seeds, replicates = stacked.shape[0], stacked.shape[1]
    draws = rng.integers(0, seeds, size=(replicates, seeds))
    return stacked[draws, np.arange(replicates)[:, None], :].mean(axis=1)
