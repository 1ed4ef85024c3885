"""The study's analysis and report, from the per-run summaries alone: each arm's means per dominance setting, the
candidate minus every other arm (bootstrap interval, Welch and permutation p; :mod:`equiseg.experiments.significance`),
the pre-registered targets and the Markdown section of ``experiment.results_doc``, with the figures of
:mod:`equiseg.experiments.study_figures` (docs/results.md, "Study")."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig
from equiseg.experiments.report import update_document
from equiseg.experiments.runs import write_json_atomic
from equiseg.experiments.significance import compare
from equiseg.experiments.study_figures import FIGURE_CAPTIONS, draw_figures, find_comparison
from equiseg.experiments.study_plan import STUDY_METRICS, planned_runs, summary_dir

__all__ = ["analyse_study", "study_markdown", "write_study_report"]


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def subset_keys(modalities: Sequence[str]) -> list[str]:
    """The kept-modality subsets the EMM avg averages, largest first in ``data.modalities`` order
    (``rgb-depth, rgb-thermal, depth-thermal, rgb, depth, thermal``): the score keys are ``miou/emm/<subset>``."""
    return ["-".join(kept) for k in range(len(modalities) - 1, 0, -1) for kept in combinations(modalities, k)]


def _subset_means(cfg: EquisegConfig, runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each arm's mean mIoU per kept subset, and the mean clean-minus-without-``m`` drop per modality."""
    keys = [f"miou/emm/{k}" for k in subset_keys(cfg.data.modalities)]
    keys += [f"drop_without_{m}" for m in cfg.data.modalities]
    present = [k for k in keys if runs and all(k in r["scores"] for r in runs)]
    return {k.removeprefix("miou/emm/"): _mean([float(r["scores"][k]) for r in runs]) for k in present}


def _curve_stats(run: Mapping[str, Any]) -> tuple[float, float]:
    """A run's best validation objective, and how much it moves from epoch to epoch: the standard deviation of its
    change over the second half of the epochs run (NaN without a curve of at least 3 points there). Early stopping
    with a fixed patience ends a jittery run sooner by chance, so arms are only comparable with this in view."""
    values = [float(c["objective"]) for c in run.get("curve", []) if "objective" in c]
    if not values:
        return math.nan, math.nan
    half = values[len(values) // 2 :]
    steps = [b - a for a, b in pairwise(half)]
    jitter = statistics.pstdev(steps) if len(steps) >= 2 else math.nan
    return max(values), jitter


def analyse_study(cfg: EquisegConfig, summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per dominance setting: each arm's means, and the candidate minus every other arm on :data:`STUDY_METRICS`
    (bootstrap interval, Welch p, permutation p); the pre-registered targets at the strongest setting.

    Without a summary for every one of :func:`~equiseg.experiments.study_plan.planned_runs` the analysis is
    *interim*: settings without runs are left out, and a setting still missing runs says how many it holds. The
    stopping rule, fixed before the first run, is every planned run of a setting, so the targets are judged only
    once the strongest setting is complete (``targets`` is empty before); other settings do not enter them. An
    exploratory study (``experiment.preregistered: false``) has no targets.
    """
    ec = cfg.experiment
    by_level: dict[float, dict[str, list[Mapping[str, Any]]]] = {}
    for raw in summaries:
        by_level.setdefault(float(raw["dominance"]), {}).setdefault(str(raw["model"]), []).append(raw)
    planned = planned_runs(cfg)
    done = {(float(r["dominance"]), str(r["model"]), int(r["seed"])) for r in summaries} & planned
    levels: dict[str, Any] = {}
    for level in sorted(by_level):
        arms = {m: sorted(runs, key=lambda r: int(r["seed"])) for m, runs in by_level[level].items()}
        arm_rows = {}
        curves = {model: [_curve_stats(r) for r in arms.get(model, [])] for model in ec.models}
        for model in ec.models:
            runs = arms.get(model, [])
            arm_rows[model] = {
                "n": len(runs),
                "params": int(runs[0]["params"]) if runs else 0,
                "epochs_run": _mean([float(r["epochs_run"]) for r in runs]),
                "early_stopped": sum(bool(r["early_stopped"]) for r in runs),
                # runs without a validation curve (or too short a one) are left out of these two
                "val_objective_best": _mean([best for best, _ in curves[model] if not math.isnan(best)]),
                "val_objective_jitter": _mean([jit for _, jit in curves[model] if not math.isnan(jit)]),
                **{m: _mean([float(r["scores"].get(m, math.nan)) for r in runs]) for m in STUDY_METRICS},
                "seeds": [int(r["seed"]) for r in runs],
                "per_run": {m: [float(r["scores"].get(m, math.nan)) for r in runs] for m in STUDY_METRICS},
                "subsets": _subset_means(cfg, runs),
            }
        comparisons = []
        candidate = [r["scores"] for r in arms.get(ec.candidate, [])]
        for other in ec.models:
            if other == ec.candidate:
                continue
            rival = [r["scores"] for r in arms.get(other, [])]
            for metric in STUDY_METRICS:
                a = [float(s[metric]) for s in candidate if metric in s]
                b = [float(s[metric]) for s in rival if metric in s]
                result = compare(a, b, level=ec.ci_level, replicates=ec.bootstrap_samples, seed=ec.bootstrap_seed)
                comparisons.append({"other": other, "metric": metric, **result.to_dict()})
        level_planned = {key for key in planned if key[0] == level}
        levels[f"{level:g}"] = {
            "runs": len(done & level_planned),
            "planned_runs": len(level_planned),
            "complete": level_planned <= done,
            "arms": arm_rows,
            "comparisons": comparisons,
        }
    strongest = f"{max(key[0] for key in planned):g}" if planned else None
    judged = ec.preregistered and strongest in levels and levels[strongest]["complete"]
    return {
        "profile": cfg.profile,
        "runs": len(done),
        "planned_runs": len(planned),
        "complete": done == planned,
        "levels": levels,
        "targets": _targets(cfg, levels) if judged else [],
    }


def _significant(comp: Mapping[str, Any]) -> bool:
    """p < 0.05 in both tests (a NaN p, e.g. from a single run, is not significant)."""
    return bool(comp["welch_p"] < 0.05 and comp["permutation_p"] < 0.05)


def _targets(cfg: EquisegConfig, levels: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pre-registered targets (docs/results.md, "Study"), judged at the strongest dominance setting."""
    if not levels:
        return []
    ec = cfg.experiment
    strongest = max(levels, key=float)
    level = levels[strongest]
    rows: list[dict[str, Any]] = []

    def add(name: str, requirement: str, comp: dict[str, Any] | None, met: bool) -> None:
        rows.append({"level": strongest, "name": name, "requirement": requirement, "comparison": comp, "met": met})

    for other, margin in ec.emm_margins.items():
        comp = find_comparison(level, other, "emm_avg")
        ok = comp is not None and comp["difference"] >= margin and _significant(comp)
        add(f"EMM avg: {ec.candidate} - {other}", f">= {margin:g} with p < 0.05 (both tests)", comp, ok)
    if ec.ablation:
        comp = find_comparison(level, ec.ablation, "emm_avg")
        ok = comp is not None and comp["difference"] > 0 and _significant(comp)
        add(f"SGM gain: {ec.candidate} - {ec.ablation}", "> 0 with p < 0.05 (both tests)", comp, ok)
    baselines = [m for m in ec.models if m != ec.candidate and m != ec.ablation]
    if baselines:
        best = max(baselines, key=lambda m: level["arms"][m]["clean_miou"])
        comp = find_comparison(level, best, "clean_miou")
        ok = comp is not None and comp["difference"] >= -ec.clean_tolerance
        add(f"clean mIoU: {ec.candidate} - {best} (best baseline)", f">= -{ec.clean_tolerance:g}", comp, ok)
    for other in ec.emm_margins:
        comp = find_comparison(level, other, "balance_ratio")
        ok = comp is not None and comp["low"] > 0
        add(f"balance ratio: {ec.candidate} - {other}", "> 0, CI excludes 0", comp, ok)
    return rows


def _num(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _diff(comp: Mapping[str, Any] | None, ratio: bool) -> str:
    if comp is None or math.isnan(comp["difference"]):
        return "n/a"
    digits = 3 if ratio else 1
    return f"{comp['difference']:+.{digits}f} [{comp['low']:+.{digits}f}, {comp['high']:+.{digits}f}]"


def _subset_table(arms: Mapping[str, Any]) -> list[str]:
    """Where the EMM avg comes from: each arm's mean mIoU with only these modalities kept, and what losing each
    modality alone costs it (clean minus that subset)."""
    columns = next((list(arm.get("subsets", {})) for arm in arms.values() if arm.get("subsets")), [])
    if not columns:
        return []
    names = [c.replace("drop_without_", "drop without ") if c.startswith("drop_") else f"only {c}" for c in columns]
    lines = ["", f"| arm (mIoU by kept modalities) | {' | '.join(names)} |", "| --- |" + " ---: |" * len(columns)]
    for model, arm in arms.items():
        values = [arm.get("subsets", {}).get(c) for c in columns]
        lines.append(f"| {model} | " + " | ".join("n/a" if v is None else f"{v:.1f}" for v in values) + " |")
    return lines


def study_markdown(cfg: EquisegConfig, analysis: Mapping[str, Any], figures: Mapping[str, str] | None = None) -> str:
    """The Markdown section of the study (everything in it derives from the per-run summaries); ``figures`` maps
    :func:`~equiseg.experiments.study_figures.figure_names` keys to their paths relative to the document."""
    ec = cfg.experiment
    lines = [
        f"## Study `{cfg.profile}`",
        "",
        f"- Command: `equiseg experiment study --profile {cfg.profile} --analyse-only`",
        f"- Per-run summaries: `{summary_dir(cfg).as_posix()}/dominance-<d>/<model>-seed<seed>.json`",
        f"- World: {cfg.data.samples} synthetic scenes of {cfg.data.image_size}², modalities "
        f"{', '.join(cfg.data.modalities)}; dominant modality `{cfg.data.dominant_modality or 'none'}`; "
        f"conditions ({'night/fog' if cfg.data.conditions else 'none'}) in split(s): {cfg.data.conditions_split}",
        f"- Training: up to {cfg.train.epochs} epochs, early-stop patience {cfg.train.early_stop_patience}, batch "
        f"{cfg.train.batch_size}, lr {cfg.train.lr:g}; seeds {list(ec.seeds)}; scored with the "
        f"`{cfg.robustness.suite}` suite on `{cfg.robustness.split}`",
        "- Validation: the objective (clean + EMM avg) / 2 on val that picks the checkpoint and stops the run; per "
        "arm the mean over runs of its best value and of its jitter (standard deviation of its epoch-to-epoch change "
        "over the second half of the run)",
        f"- Differences: {ec.candidate} minus each arm, mean over seeds with a {ec.ci_level:.0%} bootstrap interval "
        f"over runs ({ec.bootstrap_samples} replicates), Welch's t-test p and the permutation test p (exact where "
        "the relabellings can be enumerated); mIoU points, balance ratio 0-1",
        "",
    ]
    if not analysis.get("complete", True):
        lines[2] = lines[2].replace("--analyse-only`", "--analyse-only --interim`")
        lines += [
            f"**Interim: {analysis['runs']} of {analysis['planned_runs']} planned runs.** A setting is complete when "
            "every planned run of it is in (the stopping rule, fixed before the first run); one still in progress "
            "says so in its heading and allows no conclusion. The pre-registered targets are judged once the "
            "strongest setting is complete.",
            "",
        ]
    if not ec.preregistered:
        n = len(ec.seeds)
        lines += [
            f"**Exploratory: no pre-registered targets.** With {n} runs per arm the smallest exact permutation p is "
            f"2 / C({2 * n}, {n}) = {2 / math.comb(2 * n, n):.3g}, so these tables describe; they decide nothing.",
            "",
        ]
    for name, level in analysis["levels"].items():
        progress = "" if level.get("complete", True) else f" (interim: {level['runs']} of {level['planned_runs']} runs)"
        lines += [f"### Dominance {name}{progress}", ""]
        lines += [
            "| arm | params (M) | runs | epochs run (mean) | early-stopped | val objective (best) | val jitter "
            "| clean | EMM avg | balance |"
        ]
        lines += ["| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for model, arm in level["arms"].items():
            if not arm["n"]:
                lines.append(f"| {model} | n/a | 0 | n/a | 0 | n/a | n/a | n/a | n/a | n/a |")
                continue
            lines.append(
                f"| {model} | {arm['params'] / 1e6:.2f} | {arm['n']} | {arm['epochs_run']:.1f} | "
                f"{arm['early_stopped']} | {_num(arm['val_objective_best'], 1)} | "
                f"{_num(arm['val_objective_jitter'], 2)} | {arm['clean_miou']:.1f} | {arm['emm_avg']:.1f} | "
                f"{arm['balance_ratio']:.3f} |"
            )
        lines += _subset_table(level["arms"])
        if level["comparisons"]:  # a single-arm study has nothing to compare
            lines += ["", f"| {ec.candidate} minus | metric | mean [CI] | Welch p | permutation p |"]
            lines += ["| --- | --- | --- | ---: | ---: |"]
        for comp in level["comparisons"]:
            exact = "" if comp["permutation_exact"] else " (MC)"
            lines.append(
                f"| {comp['other']} | {comp['metric']} | {_diff(comp, comp['metric'] == 'balance_ratio')} | "
                f"{_p(comp['welch_p'])} | {_p(comp['permutation_p'])}{exact} |"
            )
        lines.append("")
    if analysis["targets"]:
        strongest = analysis["targets"][0]["level"]
        lines += [f"### Pre-registered targets at dominance {strongest}", ""]
        lines += ["| target | requirement | mean [CI] | Welch p | permutation p | met |"]
        lines += ["| --- | --- | --- | ---: | ---: | --- |"]
        for row in analysis["targets"]:
            comp = row["comparison"]
            ratio = row["name"].startswith("balance")
            welch = _p(comp["welch_p"]) if comp else "n/a"
            perm = _p(comp["permutation_p"]) if comp else "n/a"
            lines.append(
                f"| {row['name']} | {row['requirement']} | {_diff(comp, ratio)} | {welch} | {perm} | "
                f"{'yes' if row['met'] else '**no**'} |"
            )
        lines.append("")
    for key, path in (figures or {}).items():
        lines += [f"![{FIGURE_CAPTIONS[key].format(candidate=ec.candidate)}]({path})", ""]
    return "\n".join(lines)


def write_study_report(
    cfg: EquisegConfig, analysis: Mapping[str, Any], *, write_doc: bool = True, figure: bool = True
) -> dict[str, Path]:
    """``analysis.json`` beside the summaries, the figures in ``results/`` beside ``experiment.results_doc``, and
    the profile's section of that document."""
    out: dict[str, Path] = {}
    folder = summary_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    out["analysis"] = folder / "analysis.json"
    write_json_atomic(out["analysis"], analysis)
    doc = Path(cfg.experiment.results_doc)
    drawn = draw_figures(cfg, analysis, doc.parent / "results") if figure else {}
    out.update({f"figure_{key}": path for key, path in drawn.items()})
    if write_doc:
        rel = {key: f"results/{path.name}" for key, path in drawn.items()}
        update_document(doc, cfg.profile, study_markdown(cfg, analysis, rel), kind="study")
        out["doc"] = doc
    return out
