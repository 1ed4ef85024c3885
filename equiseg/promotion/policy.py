"""The promotion gate policy: value floors, change thresholds, slice rules and a paired bootstrap.

:func:`decide` turns a policy (:class:`~equiseg.config.GateConfig`) and two robustness results into a
:class:`~equiseg.promotion.verdict.GateVerdict`. It depends only on plain data: anything shaped like
``equiseg.robustness.RobustnessResult`` (``.slices[name]`` with ``miou``, ``ci_low``, ``ci_high``,
``per_image_miou``, ``sample_ids`` and a ``summary_metrics()`` dict) works, so the rules are tested with synthetic
numbers. The formulas are in docs/gate.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from equiseg.config import GateConfig, config_to_dict
from equiseg.promotion.bootstrap import align_per_image, paired_bootstrap_lower_bounds
from equiseg.promotion.verdict import Check, GateVerdict, ResultLike, fmt_number

__all__ = ["CHANGE_METRICS", "FLOOR_RULES", "constant_predictor_bound", "decide"]

#: Summary metrics with a value floor: (metric key, policy attribute, plain-words name).
FLOOR_RULES: tuple[tuple[str, str, str], ...] = (
    ("clean_miou", "min_clean_miou", "clean mIoU"),
    ("emm_avg", "min_emm_avg", "mean mIoU over missing-modality sets (EMM avg)"),
    ("worst_slice_miou", "min_worst_slice", "worst-slice mIoU"),
)
#: Summary metrics compared against the champion with the absolute and relative change thresholds.
CHANGE_METRICS: tuple[str, ...] = ("clean_miou", "emm_avg", "worst_slice_miou")
#: Key of the per-image mean over all shared slices in the bootstrap input (rule 6).
_OVERALL = "__overall__"


def decide(
    policy: GateConfig,
    candidate: ResultLike,
    champion: ResultLike | None,
    *,
    candidate_name: str = "",
    champion_version: str | None = None,
) -> GateVerdict:
    """Apply the gate policy to a candidate and (unless this is the first run) the re-scored champion.

    Rules (all in mIoU points unless stated; formulas in docs/gate.md):

    1. value floors on clean mIoU, EMM average, worst slice and balance ratio (always); and two floors that need
       no tuning (always, when the result carries per-class IoU and slice parameters): clean mIoU and every
       kept-modality subset must beat the best any constant predictor can score (``100 / K``: a majority-class
       model is blocked), and the mIoU with any one modality missing must keep ``min_keep_without`` of clean
       (a model that collapses without one sensor is blocked; EQUISeg, arXiv 2509.24505, is about exactly that);
    2. change thresholds per summary metric: ``c - b >= -max_abs_drop`` and ``c - b >= -max_rel_drop * b``;
    3. per-slice change: ``c_s - b_s >= -slice_max_abs_drop`` for every slice both results share;
    4. balance ratio: ``c >= b * (1 - max_rel_drop)``;
    5. non-inferiority per slice: paired-bootstrap lower bound of ``mean_i(c_i - b_i) >= -noninferiority_margin``;
    6. improvement (if ``require_improvement``): the lower bound of the per-image mean over all shared slices
       must EXCEED ``min_improvement`` (strictly: a tie is no reason to promote), so a candidate that is better by
       noise only is blocked.

    Rules 2-6 need a champion; on a first run (``champion is None``) only rule 1 applies.

    Args:
        policy: the gate section of the config.
        candidate: robustness result of the candidate.
        champion: robustness result of the champion on the SAME data, suite and seed, or ``None``.
        candidate_name: recorded in the verdict (checkpoint path or model URI).
        champion_version: the registry version of the champion (used for compare-and-set on promotion).

    Raises:
        ValueError: the two results do not cover the same images or slices are malformed.
    """
    cand_m = _finite_metrics(candidate.summary_metrics())
    checks = _floor_checks(policy, cand_m) + _sanity_checks(policy, candidate)
    champ_m: dict[str, float] = {}
    n_paired = 0
    if champion is not None:
        champ_m = _finite_metrics(champion.summary_metrics())
        checks += _change_checks(policy, cand_m, champ_m)
        slice_checks, n_paired = _slice_checks(policy, candidate, champion)
        checks += slice_checks
    return GateVerdict(
        passed=all(c.passed for c in checks),
        checks=checks,
        mode=policy.mode,
        first_run=champion is None,
        candidate=candidate_name,
        champion_version=champion_version if champion is not None else None,
        candidate_metrics=cand_m,
        champion_metrics=champ_m,
        candidate_slices=_slice_table(candidate),
        champion_slices=_slice_table(champion) if champion is not None else {},
        policy=config_to_dict(policy),
        num_samples=n_paired,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _floor_checks(policy: GateConfig, cand_m: Mapping[str, float]) -> list[Check]:
    """Rule 1: the value floors, on the candidate alone."""
    checks = []
    for key, attr, words in FLOOR_RULES:
        floor = float(getattr(policy, attr))
        checks.append(_at_least(f"floor.{key}", cand_m.get(key, math.nan), floor, f"candidate {words}", "floor"))
    checks.append(
        _at_least(
            "floor.balance_ratio",
            cand_m.get("balance_ratio", math.nan),
            policy.min_balance_ratio,
            "candidate modality balance (min/max single-modality mIoU)",
            "floor",
            unit="",
        )
    )
    return checks


def constant_predictor_bound(result: ResultLike) -> float:
    """The highest mIoU (points) any constant predictor can score on ``result``'s clean slice: ``100 / K``.

    A model that predicts one class everywhere has IoU = that class's pixel share (at most 1) on it and 0 on every
    other class, so its mIoU is at most ``1 / K`` with ``K`` the classes counted by the mean (NaN IoUs are not
    counted). NaN when the result does not say how many classes it averages over.
    """
    clean = result.slices.get("clean")
    per_class = getattr(clean, "per_class_iou", None) if clean is not None else None
    if per_class:
        counted = sum(1 for v in per_class if not math.isnan(float(v)))
    else:
        counted = int((getattr(result, "meta", None) or {}).get("num_classes") or 0)
    return 100.0 / counted if counted > 0 else math.nan


def _sanity_checks(policy: GateConfig, candidate: ResultLike) -> list[Check]:
    """Rule 1b: beat a constant predictor on clean and every kept-modality subset; keep enough without any one."""
    checks: list[Check] = []
    bound = constant_predictor_bound(candidate)
    emm: dict[str, dict[str, Any]] = {  # kept-modality subsets: slice name -> params ("kept", "missing")
        name: dict(getattr(s, "params", {})) for name, s in candidate.slices.items() if getattr(s, "kind", "") == "emm"
    }
    emm = {name: p for name, p in emm.items() if "kept" in p}
    if policy.beat_constant and not math.isnan(bound) and "clean" in candidate.slices:
        for name in ["clean", *emm]:
            label = "clean" if name == "clean" else "kept " + "+".join(emm[name]["kept"])
            checks.append(
                _at_least(
                    f"floor.beats_constant.{label.replace(' ', '_')}",
                    float(candidate.slices[name].miou),
                    bound,
                    f"mIoU ({label}) against the best constant (majority-class) predictor",
                    "floor",
                    strict=True,
                )
            )
    clean_miou = float(candidate.slices["clean"].miou) if "clean" in candidate.slices else math.nan
    if policy.min_keep_without > 0 and not math.isnan(clean_miou):
        for name, params in emm.items():
            missing = list(params.get("missing") or [])
            if len(missing) != 1:
                continue
            checks.append(
                _at_least(
                    f"floor.keeps_without.{missing[0]}",
                    float(candidate.slices[name].miou),
                    policy.min_keep_without * clean_miou,
                    f"mIoU with {missing[0]} missing (kept {'+'.join(params['kept'])}) against "
                    f"{policy.min_keep_without:.0%} of clean",
                    "floor",
                )
            )
    return checks


def _change_checks(policy: GateConfig, cand_m: Mapping[str, float], champ_m: Mapping[str, float]) -> list[Check]:
    """Rules 2 and 4: absolute and relative change of the summary metrics, and of the balance ratio."""
    checks = []
    for key in CHANGE_METRICS:
        c, b = cand_m.get(key, math.nan), champ_m.get(key, math.nan)
        checks.append(_at_least(f"abs_change.{key}", c - b, -policy.max_abs_drop, f"change of {key}", "champion"))
        checks.append(
            _at_least(
                f"rel_change.{key}",
                (c - b) / b if b > 0 else 0.0,
                -policy.max_rel_drop,
                f"relative change of {key}",
                "champion",
                unit="",
            )
        )
    cb, bb = cand_m.get("balance_ratio", math.nan), champ_m.get("balance_ratio", math.nan)
    checks.append(
        _at_least(
            "change.balance_ratio",
            cb,
            bb * (1.0 - policy.max_rel_drop),
            "candidate modality balance against the champion's",
            "champion",
            unit="",
        )
    )
    return checks


def _slice_checks(policy: GateConfig, candidate: ResultLike, champion: ResultLike) -> tuple[list[Check], int]:
    """Rules 3, 5 and 6 over the slices both results share; returns the checks and the number of paired images."""
    missing = sorted(set(champion.slices) - set(candidate.slices))
    if missing:
        raise ValueError(
            f"the candidate lacks slices the champion was scored on: {missing[:5]}; evaluate both with the same suite"
        )
    shared = [s for s in candidate.slices if s in champion.slices]
    checks = []
    for name in shared:
        delta = float(candidate.slices[name].miou) - float(champion.slices[name].miou)
        checks.append(
            _at_least(f"slice_drop.{name}", delta, -policy.slice_max_abs_drop, f"slice {name!r} change", "slice")
        )
    diffs = _paired_differences(candidate, champion, shared)
    n_paired = len(diffs[_OVERALL]) if diffs else 0
    bounds = paired_bootstrap_lower_bounds(
        diffs, samples=policy.bootstrap_samples, ci_level=policy.ci_level, seed=policy.seed
    )
    for name in shared:
        checks.append(
            _at_least(
                f"noninferiority.{name}",
                bounds[name],
                -policy.noninferiority_margin,
                f"lower {policy.ci_level:.0%} bound of the paired per-image difference on slice {name!r}",
                "ci",
            )
        )
    if policy.require_improvement and diffs:
        checks.append(
            _at_least(
                "improvement.overall",
                bounds[_OVERALL],
                policy.min_improvement,
                f"lower {policy.ci_level:.0%} bound of the paired per-image improvement averaged over all slices",
                "improvement",
                strict=True,
            )
        )
    return checks, n_paired


def _paired_differences(
    candidate: ResultLike, champion: ResultLike, shared: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Slice -> {sample id: candidate - champion}, plus each image's mean difference over its slices (``_OVERALL``)."""
    diffs: dict[str, dict[str, float]] = {}
    for name in shared:
        c_arr, b_arr = align_per_image(candidate.slices[name], champion.slices[name], name)
        diffs[name] = dict(zip(candidate.slices[name].sample_ids, (c_arr - b_arr).tolist(), strict=True))
    if diffs:
        per_image: dict[str, list[float]] = {}
        for values in diffs.values():
            for sample_id, d in values.items():
                per_image.setdefault(sample_id, []).append(d)
        diffs[_OVERALL] = {k: float(np.mean(v)) for k, v in per_image.items()}
    return diffs


def _at_least(
    name: str, value: float, threshold: float, what: str, kind: str, *, unit: str = " points", strict: bool = False
) -> Check:
    """``value >= threshold`` (``>`` when ``strict``) as a :class:`Check` with a reason in plain words."""
    value, threshold = float(value), float(threshold)
    if math.isnan(value):
        return Check(name, value, threshold, math.nan, False, f"{what} is missing (not reported by the evaluation)")
    margin = value - threshold
    passed = margin > 1e-9 if strict else margin >= -1e-9
    verb = {
        "floor": ("is at or above the floor", "is below the floor"),
        "champion": ("is within the allowed drop against the champion", "dropped more than allowed vs the champion"),
        "slice": ("is within the allowed per-slice drop", "dropped more than the per-slice limit vs the champion"),
        "ci": ("clears the non-inferiority margin", "does not clear the non-inferiority margin"),
        "improvement": ("shows a real improvement", "does not show an improvement beyond chance"),
    }[kind][0 if passed else 1]
    return Check(
        name, value, threshold, margin, passed, f"{what} {verb}: {fmt_number(value)} vs {fmt_number(threshold)}{unit}"
    )


def _finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _slice_table(result: ResultLike) -> dict[str, dict[str, float]]:
    return {
        name: {"miou": float(s.miou), "ci_low": float(s.ci_low), "ci_high": float(s.ci_high)}
        for name, s in result.slices.items()
    }
