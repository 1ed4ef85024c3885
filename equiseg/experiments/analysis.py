"""Statistics over the claim experiment's finished runs (docs/results.md, "Method" and "Verdict").

:func:`analyse` turns the runs into seed means with two-level bootstrap CIs (:mod:`equiseg.experiments.stats`), the
candidate's paired differences against every other model, and the targets of docs/results.md: at clean mIoU
within ``experiment.clean_tolerance`` of the best baseline, an EMM average ``experiment.emm_margins`` above the
named baselines, and an SGM ablation gain whose CI excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from equiseg.config import EquisegConfig
from equiseg.experiments.runs import CellRecord
from equiseg.experiments.stats import (
    Estimate,
    cell_replicates,
    headline_metrics,
    image_weights,
    percentile_interval,
    seed_bootstrap,
)
from equiseg.robustness.result import RobustnessResult

__all__ = ["ClaimAnalysis", "ClaimOutcome", "analyse"]

RunKey = tuple[str, int]  # (model, seed)


@dataclass
class ClaimOutcome:
    """One target of docs/results.md: what was required, what was measured, and whether it holds."""

    name: str
    requirement: str
    estimate: Estimate
    threshold: float
    met: bool
    confident: bool  # the CI also clears the threshold


@dataclass
class ClaimAnalysis:
    """Everything the report shows: per-model seed means with CIs, per-seed values, differences, targets."""

    models: list[str]
    seeds: list[int]
    candidate: str
    modalities: list[str]
    metrics: dict[str, dict[str, Estimate]]  # model -> metric -> estimate
    per_seed: dict[str, dict[str, list[float]]]  # model -> metric -> values in seed order
    differences: dict[str, dict[str, Estimate]]  # other model -> metric -> candidate minus other
    outcomes: list[ClaimOutcome]
    corruption: dict[str, dict[str, dict[str, float]]]  # model -> "<modality>/<degradation>" -> severity -> mIoU
    histories: dict[str, list[list[dict[str, float]]]]  # model -> per seed -> per epoch
    timings: dict[str, dict[str, float]]  # model -> train_s / eval_s means
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "equiseg.claim/1",
            "models": self.models,
            "seeds": self.seeds,
            "candidate": self.candidate,
            "modalities": self.modalities,
            "metrics": {m: {k: e.to_dict() for k, e in v.items()} for m, v in self.metrics.items()},
            "per_seed": self.per_seed,
            "differences": {m: {k: e.to_dict() for k, e in v.items()} for m, v in self.differences.items()},
            "outcomes": [
                {
                    "name": o.name,
                    "requirement": o.requirement,
                    "estimate": o.estimate.to_dict(),
                    "threshold": o.threshold,
                    "met": o.met,
                    "confident": o.confident,
                }
                for o in self.outcomes
            ],
            "corruption": self.corruption,
            "histories": self.histories,
            "timings": self.timings,
            "meta": self.meta,
        }


def analyse(cfg: EquisegConfig, records: Sequence[CellRecord], *, progress: bool = False) -> ClaimAnalysis:
    """Seed means with two-level bootstrap CIs, the candidate's paired differences and the targets.

    Raises:
        ValueError: no finished run of the candidate, or runs scored on different test images.
    """
    ec = cfg.experiment
    by_model: dict[str, list[CellRecord]] = {}
    for record in sorted(records, key=lambda r: r.seed):
        by_model.setdefault(record.model, []).append(record)
    models = [m for m in ec.models if m in by_model]
    if ec.candidate not in by_model:
        raise ValueError(f"no finished run of the candidate {ec.candidate}")
    results = {(r.model, r.seed): RobustnessResult.from_json(r.robustness_path) for r in records}
    modalities, num_images = _shared_test_set(results)

    rng = np.random.default_rng(ec.bootstrap_seed)
    weights = image_weights(num_images, ec.bootstrap_samples, rng)
    point, replicates = _cell_replicates(cfg, records, results, modalities, weights, progress=progress)
    keys = sorted({k for values in point.values() for k in values})
    model_reps = {m: seed_bootstrap([replicates[(r.model, r.seed)] for r in by_model[m]], keys, rng) for m in models}
    per_seed = {m: {k: [point[(r.model, r.seed)].get(k, math.nan) for r in by_model[m]] for k in keys} for m in models}
    metrics = {m: _estimates(per_seed[m], model_reps[m], keys, ec.ci_level) for m in models}
    differences = _differences(ec.candidate, models, keys, metrics, model_reps, ec.ci_level)

    return ClaimAnalysis(
        models=models,
        seeds=sorted({r.seed for r in records}),
        candidate=ec.candidate,
        modalities=modalities,
        metrics=metrics,
        per_seed=per_seed,
        differences=differences,
        outcomes=_outcomes(cfg, metrics, differences),
        corruption={m: _corruption_means([results[(r.model, r.seed)] for r in by_model[m]]) for m in models},
        histories={m: [r.history for r in by_model[m]] for m in models},
        timings={
            m: {
                "train_s": math.fsum(r.train_seconds for r in by_model[m]) / len(by_model[m]),
                "eval_s": math.fsum(r.eval_seconds for r in by_model[m]) / len(by_model[m]),
            }
            for m in models
        },
        meta={
            "num_test_images": num_images,
            "bootstrap_samples": ec.bootstrap_samples,
            "ci_level": ec.ci_level,
            "missing_modes": {
                m: sorted({str(results[(r.model, r.seed)].meta.get("missing_mode")) for r in by_model[m]})
                for m in models
            },
            "devices": sorted({r.device for r in records}),
        },
    )


def _shared_test_set(results: Mapping[RunKey, RobustnessResult]) -> tuple[list[str], int]:
    """``(modalities, number of test images)`` shared by every run; refuses runs scored on different images."""
    sample_ids = {tuple(res.slices["clean"].sample_ids) for res in results.values()}
    if len(sample_ids) != 1:
        raise ValueError("the runs were scored on different test images; a paired comparison is impossible")
    modalities = list(next(iter(results.values())).meta["modalities"])
    return modalities, len(next(iter(sample_ids)))


def _cell_replicates(
    cfg: EquisegConfig,
    records: Sequence[CellRecord],
    results: Mapping[RunKey, RobustnessResult],
    modalities: Sequence[str],
    weights: NDArray[np.float64],
    *,
    progress: bool,
) -> tuple[dict[RunKey, dict[str, float]], dict[RunKey, list[dict[str, float]]]]:
    """Per run: its headline metrics and their first-level (test-image) bootstrap replicates."""
    absent_as_zero = bool(cfg.robustness.miou_absent_as_zero)
    point: dict[RunKey, dict[str, float]] = {}
    replicates: dict[RunKey, list[dict[str, float]]] = {}
    for record in tqdm(records, desc="bootstrap", unit="run", disable=not progress):
        key = (record.model, record.seed)
        point[key] = headline_metrics(results[key].aggregates)
        confusion = RobustnessResult.load_confusion(record.confusion_path)
        replicates[key] = cell_replicates(
            confusion, results[key].slices, modalities, weights, absent_as_zero=absent_as_zero
        )
    return point, replicates


def _estimates(
    per_seed: Mapping[str, list[float]], reps: NDArray[np.float64], keys: Sequence[str], level: float
) -> dict[str, Estimate]:
    """A model's seed mean and bootstrap interval per metric (metrics with no finite value are left out)."""
    out: dict[str, Estimate] = {}
    for j, key in enumerate(keys):
        values = np.array(per_seed[key], dtype=np.float64)
        if not np.isfinite(values).any():
            continue
        low, high = percentile_interval(reps[:, j], level)
        out[key] = Estimate(float(np.nanmean(values)), low, high)
    return out


def _differences(
    candidate: str,
    models: Sequence[str],
    keys: Sequence[str],
    metrics: Mapping[str, Mapping[str, Estimate]],
    model_reps: Mapping[str, NDArray[np.float64]],
    level: float,
) -> dict[str, dict[str, Estimate]]:
    """Candidate minus each other model, paired replicate by replicate."""
    differences: dict[str, dict[str, Estimate]] = {}
    for model in models:
        if model == candidate:
            continue
        differences[model] = {}
        for j, key in enumerate(keys):
            if key not in metrics[model] or key not in metrics[candidate]:
                continue
            low, high = percentile_interval(model_reps[candidate][:, j] - model_reps[model][:, j], level)
            differences[model][key] = Estimate(metrics[candidate][key].value - metrics[model][key].value, low, high)
    return differences


def _corruption_means(results: Sequence[RobustnessResult]) -> dict[str, dict[str, float]]:
    """``"<modality>/<degradation>" -> severity -> mIoU``, the mean over a model's seeds."""
    table: dict[str, dict[str, list[float]]] = {}
    for result in results:
        matrix = (result.aggregates.get("corruption") or {}).get("matrix", {})
        for modality, rows in matrix.items():
            for degradation, row in rows.items():
                for severity, value in row.items():
                    table.setdefault(f"{modality}/{degradation}", {}).setdefault(severity, []).append(float(value))
    return {name: {s: math.fsum(v) / len(v) for s, v in row.items()} for name, row in sorted(table.items())}


def _at_least(name: str, requirement: str, diff: Estimate, threshold: float) -> ClaimOutcome:
    """Met when the point estimate clears ``threshold``; confident when the whole CI does."""
    return ClaimOutcome(name, requirement, diff, threshold, diff.value >= threshold, diff.low >= threshold)


def _outcomes(
    cfg: EquisegConfig, metrics: Mapping[str, Mapping[str, Estimate]], differences: Mapping[str, Mapping[str, Estimate]]
) -> list[ClaimOutcome]:
    ec = cfg.experiment
    out: list[ClaimOutcome] = []
    baselines = [m for m in differences if m != ec.ablation and "clean" in metrics[m]]
    if baselines:
        best = max(baselines, key=lambda m: metrics[m]["clean"].value)
        threshold = -ec.clean_tolerance
        requirement = f"{ec.candidate} - {best} >= {threshold:g}"
        out.append(
            _at_least(f"clean mIoU vs best baseline ({best})", requirement, differences[best]["clean"], threshold)
        )
    for model, margin in ec.emm_margins.items():
        if model in differences and "emm_avg" in differences[model]:
            requirement = f"{ec.candidate} - {model} >= {margin:g}"
            out.append(_at_least(f"EMM avg vs {model}", requirement, differences[model]["emm_avg"], margin))
    if ec.ablation and ec.ablation in differences and "emm_avg" in differences[ec.ablation]:
        diff = differences[ec.ablation]["emm_avg"]
        out.append(
            ClaimOutcome(
                name=f"SGM gain in EMM avg ({ec.candidate} - {ec.ablation})",
                requirement="CI excludes 0 (lower bound > 0)",
                estimate=diff,
                threshold=0.0,
                met=diff.low > 0.0,
                confident=diff.low > 0.0,
            )
        )
    return out
