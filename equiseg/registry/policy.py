"""The promotion gate policy: value floors, change thresholds, slice rules and a paired bootstrap.

:func:`decide` turns a policy (:class:`~equiseg.config.GateConfig`) and two robustness results into a
:class:`GateVerdict`. It depends only on plain data: anything shaped like ``equiseg.robustness.RobustnessResult``
(``.slices[name]`` with ``miou``, ``ci_low``, ``ci_high``, ``per_image_miou``, ``sample_ids`` and a
``summary_metrics()`` dict) works, so the rules are tested with synthetic numbers. The formulas are in docs/gate.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from equiseg.config import GateConfig, config_to_dict

__all__ = [
    "Check",
    "GateVerdict",
    "ResultLike",
    "SliceLike",
    "align_per_image",
    "decide",
    "paired_bootstrap_lower_bounds",
    "write_verdict",
]

#: Summary metrics with a value floor: (metric key, policy attribute, plain-words name).
FLOOR_RULES: tuple[tuple[str, str, str], ...] = (
    ("clean_miou", "min_clean_miou", "clean mIoU"),
    ("emm_avg", "min_emm_avg", "mean mIoU over missing-modality sets (EMM avg)"),
    ("worst_slice_miou", "min_worst_slice", "worst-slice mIoU"),
)
#: Summary metrics compared against the champion with the absolute and relative change thresholds.
CHANGE_METRICS: tuple[str, ...] = ("clean_miou", "emm_avg", "worst_slice_miou")


class SliceLike(Protocol):
    """One evaluation slice (a degradation, severity or missing-modality set) of a robustness result."""

    @property
    def miou(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...
    @property
    def per_image_miou(self) -> Sequence[float]: ...
    @property
    def sample_ids(self) -> Sequence[str]: ...


class ResultLike(Protocol):
    """What the gate needs from ``equiseg.robustness.RobustnessResult``."""

    @property
    def slices(self) -> Mapping[str, SliceLike]: ...
    def summary_metrics(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Check:
    """One rule of the gate applied to one number.

    Attributes:
        name: stable rule id, e.g. ``floor.clean_miou`` or ``slice_drop.emm_missing_rgb``.
        value: the measured value (candidate value, or a change, or a bootstrap lower bound).
        threshold: the bound the value must reach (``value >= threshold`` passes).
        margin: ``value - threshold``; negative when the rule fails.
        passed: whether the rule holds.
        reason: the outcome in plain words.
    """

    name: str
    value: float
    threshold: float
    margin: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision with every check; serialised as ``gate.json`` and ``gate.md``.

    Attributes:
        passed: every check passed.
        checks: all checks, in the order they were applied.
        mode: the policy mode (``enabled``, ``dry_run`` or ``manual``); it decides what promotion does with a pass.
        first_run: no champion existed, so only the value floors applied.
        candidate: what was gated (checkpoint path or model URI).
        champion_version: the champion version the candidate was compared with (the compare-and-set value).
        candidate_metrics / champion_metrics: summary metrics of both, scored on the same data.
        candidate_slices / champion_slices: per-slice ``{"miou", "ci_low", "ci_high"}``.
        policy: the policy that produced the verdict.
        num_samples: images in the paired comparison (0 on a first run).
        created_at: ISO-8601 UTC time of the decision.
    """

    passed: bool
    checks: list[Check]
    mode: str
    first_run: bool
    candidate: str = ""
    champion_version: str | None = None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    candidate_slices: dict[str, dict[str, float]] = field(default_factory=dict)
    champion_slices: dict[str, dict[str, float]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 0
    created_at: str = ""

    @property
    def failed_checks(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list[str]:
        """Plain-words reasons of the failed checks (or one line saying all passed)."""
        failed = self.failed_checks
        if not failed:
            return [f"all {len(self.checks)} checks passed"]
        return [c.reason for c in failed]

    def headline(self) -> str:
        """One line for logs and run summaries, e.g. ``passed (12 checks, vs champion v3)``."""
        against = "first run, floors only" if self.first_run else f"vs champion v{self.champion_version}"
        if self.passed:
            return f"passed ({len(self.checks)} checks, {against}, mode {self.mode})"
        names = ", ".join(c.name for c in self.failed_checks[:3])
        more = f" and {len(self.failed_checks) - 3} more" if len(self.failed_checks) > 3 else ""
        return f"blocked: {names}{more} failed ({against})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-safe; non-finite numbers become ``None``)."""
        return _json_safe(dataclasses.asdict(self) | {"reasons": self.reasons})

    def to_json(self) -> str:
        """The verdict as indented JSON (the content of ``gate.json``)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> GateVerdict:
        """Rebuild a verdict written by :meth:`to_json`."""
        raw = json.loads(text)
        raw.pop("reasons", None)
        checks = [
            Check(**{**c, "value": _num(c["value"]), "threshold": _num(c["threshold"]), "margin": _num(c["margin"])})
            for c in raw.pop("checks")
        ]
        return cls(checks=checks, **raw)

    def with_checks(self, extra: Sequence[Check]) -> GateVerdict:
        """A copy with more checks appended (e.g. the serving check) and ``passed`` recomputed."""
        checks = [*self.checks, *extra]
        return dataclasses.replace(self, checks=checks, passed=all(c.passed for c in checks))

    def to_markdown(self) -> str:
        """Human-readable report (the content of ``gate.md``)."""
        status = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# Promotion gate: {status}",
            "",
            f"- candidate: `{self.candidate or '(unnamed)'}`",
            f"- champion compared with: {('version ' + self.champion_version) if self.champion_version else 'none'}"
            + (" (first run: value floors only)" if self.first_run else ""),
            f"- mode: `{self.mode}`"
            + {
                "enabled": " (a pass moves `champion` to the candidate)",
                "dry_run": " (decision recorded, no alias moves)",
                "manual": " (a pass sets `challenger`; `equiseg registry approve` promotes)",
            }.get(self.mode, ""),
            f"- paired images: {self.num_samples}" if not self.first_run else "- paired images: n/a",
            f"- decided at: {self.created_at}",
            "",
            "## Why",
            "",
            *[f"- {r}" for r in self.reasons],
            "",
            "## Checks",
            "",
            "| check | value | threshold | margin | result |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for c in self.checks:
            mark = "pass" if c.passed else "**FAIL**"
            lines.append(f"| `{c.name}` | {_fmt(c.value)} | {_fmt(c.threshold)} | {_fmt(c.margin)} | {mark} |")
        keys = sorted(k for k in set(self.candidate_metrics) | set(self.champion_metrics) if not k.startswith("miou/"))
        if keys:
            lines += ["", "## Summary metrics", "", "| metric | candidate | champion |", "| --- | ---: | ---: |"]
            for k in keys:
                lines.append(f"| {k} | {_fmt(self.candidate_metrics.get(k))} | {_fmt(self.champion_metrics.get(k))} |")
        if self.candidate_slices:
            lines += [
                "",
                "## Slices (mIoU with bootstrap CI)",
                "",
                "| slice | candidate | champion |",
                "| --- | --- | --- |",
            ]
            for name, s in self.candidate_slices.items():
                champ = self.champion_slices.get(name)
                lines.append(f"| {name} | {_fmt_ci(s)} | {_fmt_ci(champ) if champ else '-'} |")
        lines += ["", "How to read this report: docs/gate.md.", ""]
        return "\n".join(lines)


def write_verdict(verdict: GateVerdict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``gate.json`` and ``gate.md`` into ``out_dir`` (created if needed); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gate.json", out / "gate.md"
    json_path.write_text(verdict.to_json() + "\n")
    md_path.write_text(verdict.to_markdown())
    return json_path, md_path


# --------------------------------------------------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------------------------------------------------


def align_per_image(candidate: SliceLike, champion: SliceLike, slice_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mIoU of both results in the candidate's sample order, matched by sample id.

    Raises:
        ValueError: the two were not scored on the same images (the gate must re-score the champion on exactly
            the candidate's data), ids repeat, lengths disagree or a value is not finite.
    """
    arrays = []
    for who, s in (("candidate", candidate), ("champion", champion)):
        ids, values = list(s.sample_ids), np.asarray(s.per_image_miou, dtype=np.float64)
        if len(ids) != len(values):
            raise ValueError(
                f"slice {slice_name!r} of the {who}: {len(ids)} sample ids but {len(values)} per-image values"
            )
        if len(set(ids)) != len(ids):
            raise ValueError(f"slice {slice_name!r} of the {who}: sample ids repeat; each image must appear once")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"slice {slice_name!r} of the {who}: per-image mIoU holds NaN or inf")
        arrays.append(dict(zip(ids, values.tolist(), strict=True)))
    cand, champ = arrays
    if set(cand) != set(champ):
        only_c, only_b = sorted(set(cand) - set(champ)), sorted(set(champ) - set(cand))
        raise ValueError(
            f"slice {slice_name!r}: candidate and champion were scored on different images "
            f"(only candidate: {only_c[:5]}, only champion: {only_b[:5]}); re-score the champion on the "
            "candidate's evaluation data"
        )
    order = list(candidate.sample_ids)
    return np.array([cand[i] for i in order]), np.array([champ[i] for i in order])


def paired_bootstrap_lower_bounds(
    differences: Mapping[str, Mapping[str, float]], *, samples: int, ci_level: float, seed: int
) -> dict[str, float]:
    """One-sided lower confidence bounds of the mean paired difference, one per slice.

    Images are the resampling unit: B resamples of the union of image ids are drawn (with replacement) from
    ``numpy.random.Generator(PCG64(seed))``, and every slice is averaged over the SAME resample, weighting each of
    its images by how often it was drawn. A slice that covers only some images (e.g. a condition subset) uses its
    own images of the resample; a resample that draws none of them is skipped for that slice. The bound is the
    ``(1 - ci_level) / 2`` quantile of the resampled means (the lower end of the two-sided ``ci_level`` percentile
    interval), so the result is exact and repeatable.

    Args:
        differences: slice name -> {sample id: candidate - champion per-image mIoU}.
        samples: bootstrap resamples B.
        ci_level: two-sided confidence level, e.g. 0.95.
        seed: resampling seed.
    """
    if samples < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    universe: dict[str, int] = {}
    for per_image in differences.values():
        for sample_id in per_image:
            universe.setdefault(sample_id, len(universe))
    if not differences:
        return {}
    n = len(universe)
    if n == 0:
        raise ValueError("no images to compare: the evaluation data is empty")
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, n, size=(samples, n))
    counts = np.zeros((samples, n), dtype=np.float64)
    np.add.at(counts, (np.arange(samples)[:, None], idx), 1.0)
    q = (1.0 - ci_level) / 2.0
    bounds = {}
    for name, per_image in differences.items():
        if not per_image:
            raise ValueError(f"slice {name!r} has no images")
        pos = np.array([universe[i] for i in per_image])
        values = np.array(list(per_image.values()), dtype=np.float64)
        weight = counts[:, pos]
        total = weight.sum(axis=1)
        keep = total > 0
        means = (weight[keep] @ values) / total[keep]
        bounds[name] = float(np.quantile(means, q))
    return bounds


# --------------------------------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------------------------------


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

    1. value floors on clean mIoU, EMM average, worst slice and balance ratio (always);
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
    checks: list[Check] = []
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
    champ_m: dict[str, float] = {}
    n_paired = 0
    if champion is not None:
        champ_m = _finite_metrics(champion.summary_metrics())
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
        shared = [s for s in candidate.slices if s in champion.slices]
        missing = sorted(set(champion.slices) - set(candidate.slices))
        if missing:
            raise ValueError(
                f"the candidate lacks slices the champion was scored on: {missing[:5]}; evaluate both with the "
                "same suite"
            )
        for name in shared:
            delta = float(candidate.slices[name].miou) - float(champion.slices[name].miou)
            checks.append(
                _at_least(f"slice_drop.{name}", delta, -policy.slice_max_abs_drop, f"slice {name!r} change", "slice")
            )
        diffs: dict[str, dict[str, float]] = {}
        for name in shared:
            c_arr, b_arr = align_per_image(candidate.slices[name], champion.slices[name], name)
            diffs[name] = dict(zip(candidate.slices[name].sample_ids, (c_arr - b_arr).tolist(), strict=True))
        if diffs:
            per_image: dict[str, list[float]] = {}
            for values in diffs.values():
                for sample_id, d in values.items():
                    per_image.setdefault(sample_id, []).append(d)
            n_paired = len(per_image)
            # each image's mean difference over the slices that contain it
            diffs["__overall__"] = {k: float(np.mean(v)) for k, v in per_image.items()}
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
                    bounds["__overall__"],
                    policy.min_improvement,
                    f"lower {policy.ci_level:.0%} bound of the paired per-image improvement averaged over all slices",
                    "improvement",
                    strict=True,
                )
            )
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
    return Check(name, value, threshold, margin, passed, f"{what} {verb}: {_fmt(value)} vs {_fmt(threshold)}{unit}")


def _finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _slice_table(result: ResultLike) -> dict[str, dict[str, float]]:
    return {
        name: {"miou": float(s.miou), "ci_low": float(s.ci_low), "ci_high": float(s.ci_high)}
        for name, s in result.slices.items()
    }


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}"


def _fmt_ci(s: Mapping[str, float]) -> str:
    return f"{_fmt(s['miou'])} [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]"


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
