"""The study: arms x seeds x dominance settings, one committed summary per run, tables rebuilt from them
(docs/results.md, "Study").

``equiseg experiment study --profile study-cpu`` trains and scores every model of ``experiment.models`` with every
seed of ``experiment.seeds`` at every ``experiment.dominance_levels`` setting of the synthetic world's dominance dial
(``data.dominant_modality``, ``data.dominance``; :func:`equiseg.data.dominance.class_gains`). Each run is a claim
cell (:func:`equiseg.experiments.runs.run_cell`: resumable, reused when finished) and leaves one small JSON file,
``<summary_dir>/dominance-<d>/<model>-seed<seed>.json`` (:func:`run_summary`): config hashes, parameters, every
score of the robustness suite (per kept-modality subset, per corruption cell, per condition, balance), the per-epoch
validation curve and whether early stopping ended it. These files are committed; ``--analyse-only`` rebuilds every
table and the figure from them alone (:func:`analyse_study`), with Welch and exact permutation tests beside the
bootstrap interval (:mod:`equiseg.experiments.significance`).

This module imports neither mlflow nor kfp: ``python -m equiseg.experiments.study`` runs on a bare GPU box
(``bench/gpu_study.py`` runs many such processes in parallel).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from equiseg.config import ConfigError, EquisegConfig, load_config
from equiseg.experiments.plan import cell_config, eval_hash, train_hash, validate_experiment
from equiseg.experiments.report import update_document
from equiseg.experiments.runs import CellRecord, prepare_claim_data, run_cell, write_json_atomic
from equiseg.experiments.significance import compare
from equiseg.figures import new_figure, save_figure

__all__ = [
    "STUDY_FORMAT",
    "analyse_study",
    "level_config",
    "load_summaries",
    "planned_runs",
    "run_study",
    "run_summary",
    "study_levels",
    "study_markdown",
    "summary_path",
    "write_study_report",
]

logger = logging.getLogger(__name__)

STUDY_FORMAT = "equiseg.study-run/1"
#: The per-run figures every comparison table reports (mIoU points; the balance ratio is 0-1).
STUDY_METRICS: tuple[str, ...] = ("emm_avg", "clean_miou", "balance_ratio")
_CURVE_KEYS = ("epoch", "train_loss", "val_loss", "val_miou", "clean_miou", "emm_avg", "objective")


def study_levels(cfg: EquisegConfig) -> list[float]:
    """The dominance settings of the study: ``experiment.dominance_levels``, else ``data.dominance`` alone."""
    levels = [float(v) for v in cfg.experiment.dominance_levels] or [float(cfg.data.dominance)]
    bad = [v for v in levels if not 0.0 <= v <= 1.0]
    if bad or len(set(levels)) != len(levels):
        raise ConfigError(f"experiment.dominance_levels must be distinct fractions in [0, 1], got {levels}")
    if any(v > 0 for v in levels) and not cfg.data.dominant_modality:
        raise ConfigError("experiment.dominance_levels > 0 need data.dominant_modality (rgb, depth or thermal)")
    return sorted(levels)


def _level_name(level: float) -> str:
    return f"dominance-{level:g}"


def level_config(cfg: EquisegConfig, level: float) -> EquisegConfig:
    """The config of one dominance setting: its own data and runs under ``<output_dir>/dominance-<d>``."""
    return cfg.replace(
        **{
            "data.dominance": float(level),
            "experiment.output_dir": str(Path(cfg.experiment.output_dir) / _level_name(level)),
        }
    )


def summary_dir(cfg: EquisegConfig) -> Path:
    """Where the per-run summaries live (``experiment.summary_dir``, else ``<output_dir>/summaries``)."""
    return Path(cfg.experiment.summary_dir or Path(cfg.experiment.output_dir) / "summaries")


def summary_path(cfg: EquisegConfig, level: float, model: str, seed: int) -> Path:
    """The summary file of one run."""
    return summary_dir(cfg) / _level_name(level) / f"{model}-seed{seed}.json"


def _params(run_cfg: EquisegConfig) -> int:
    from equiseg.models import create_model  # torch: only where a run was trained

    model = create_model(
        run_cfg.model.name,
        num_classes=run_cfg.data.num_classes,
        modalities=run_cfg.data.modalities,
        share_encoder_weights=run_cfg.model.share_encoder_weights,
        sgm_weight=run_cfg.model.sgm_weight,
    )
    return int(sum(p.numel() for p in model.parameters()))


def run_summary(record: CellRecord, run_cfg: EquisegConfig, profile: str) -> dict[str, Any]:
    """The committed summary of one finished run (small JSON; everything the study tables are built from)."""
    metrics_file = record.path / "train" / "metrics.json"
    trained = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    curve = [{k: float(h[k]) for k in _CURVE_KEYS if k in h} for h in record.history]
    return {
        "format": STUDY_FORMAT,
        "profile": profile,
        "model": record.model,
        "seed": record.seed,
        "dominant_modality": run_cfg.data.dominant_modality,
        "dominance": float(run_cfg.data.dominance),
        "train_hash": record.train_hash,
        "eval_hash": record.eval_hash,
        "params": _params(run_cfg),
        "device": record.device,
        "train_seconds": round(record.train_seconds, 2),
        "eval_seconds": round(record.eval_seconds, 2),
        "best_epoch": record.best_epoch,
        "epochs_run": len(record.history),
        "epochs_max": run_cfg.train.epochs,
        "early_stopped": bool(trained.get("early_stopped", False)),
        "scores": {k: round(float(v), 4) for k, v in sorted(record.summary.items())},
        "curve": curve,
    }


def run_study(
    cfg: EquisegConfig,
    *,
    progress: bool = True,
    only: tuple[float, str, int] | None = None,
) -> list[Path]:
    """Run (or reuse) every dominance setting x seed x model and write each run's summary; returns their paths.

    A summary whose hashes match the run's config is reused without touching the run folder, so a study can be
    finished across sittings and machines by copying the summaries. ``only`` runs one ``(level, model, seed)``
    (one worker of ``bench/gpu_study.py``).
    """
    paths = []
    for level in study_levels(cfg):
        if only is not None and not math.isclose(level, only[0]):
            continue
        lcfg = level_config(cfg, level)
        validate_experiment(lcfg)
        manifest, data_root = prepare_claim_data(lcfg, progress=progress)
        # seed-major: an interrupted study has every model at the first seeds
        for seed in lcfg.experiment.seeds:
            for model in lcfg.experiment.models:
                if only is not None and (model, seed) != only[1:]:
                    continue
                path = summary_path(cfg, level, model, seed)
                run_cfg = cell_config(lcfg, model, seed)
                if path.is_file():
                    done = json.loads(path.read_text())
                    if (done.get("train_hash"), done.get("eval_hash")) == (train_hash(run_cfg), eval_hash(run_cfg)):
                        logger.info("reusing %s", path)
                        paths.append(path)
                        continue
                record = run_cell(lcfg, model, seed, manifest=manifest, data_root=data_root, progress=progress)
                write_json_atomic(path, run_summary(record, run_cfg, cfg.profile))
                paths.append(path)
    return paths


def load_summaries(cfg: EquisegConfig, *, check_hashes: bool = True, interim: bool = False) -> list[dict[str, Any]]:
    """The committed summaries of every setting x model x seed of ``cfg``; with ``interim``, those there are.

    Raises:
        FileNotFoundError: a run's summary is missing and ``interim`` is off (the message names them and how to
            produce them).
        ConfigError: a summary was made with another config (``check_hashes``).
    """
    found, missing = [], []
    for level in study_levels(cfg):
        lcfg = level_config(cfg, level)
        for model in lcfg.experiment.models:
            for seed in lcfg.experiment.seeds:
                path = summary_path(cfg, level, model, seed)
                if not path.is_file():
                    missing.append(str(path))
                    continue
                raw = json.loads(path.read_text())
                if raw.get("format") != STUDY_FORMAT:
                    raise ConfigError(f"{path} is not a study summary ({STUDY_FORMAT}); remove it or fix the path")
                run_cfg = cell_config(lcfg, model, seed)
                if check_hashes and (raw["train_hash"], raw["eval_hash"]) != (train_hash(run_cfg), eval_hash(run_cfg)):
                    raise ConfigError(
                        f"{path} was made with another config than profile {cfg.profile!r} with these --set "
                        "overrides; analyse it with the config that made it, or re-run the study to redo it"
                    )
                found.append(raw)
    if missing and not interim:
        raise FileNotFoundError(
            f"{len(missing)} run summaries missing, e.g. {missing[0]}; run `equiseg experiment study --profile "
            f"{cfg.profile}` without --analyse-only to produce them"
        )
    return found


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def planned_runs(cfg: EquisegConfig) -> set[tuple[float, str, int]]:
    """The runs the study plans, as ``(dominance, model, seed)``: every setting x model x seed."""
    ec = cfg.experiment
    return {(level, model, int(seed)) for level in study_levels(cfg) for model in ec.models for seed in ec.seeds}


def analyse_study(cfg: EquisegConfig, summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per dominance setting: each arm's means, and the candidate minus every other arm on :data:`STUDY_METRICS`
    (bootstrap interval, Welch p, permutation p); the pre-registered targets at the strongest setting.

    Without a summary for every one of :func:`planned_runs` the analysis is *interim*: settings without runs are left out
    and no target is judged (``targets`` is empty), since the stopping rule is every planned run, fixed before the
    first; the tables only show where the study stands.
    """
    ec = cfg.experiment
    by_level: dict[float, dict[str, list[Mapping[str, Any]]]] = {}
    for raw in summaries:
        by_level.setdefault(float(raw["dominance"]), {}).setdefault(str(raw["model"]), []).append(raw)
    levels: dict[str, Any] = {}
    for level in sorted(by_level):
        arms = {m: sorted(runs, key=lambda r: int(r["seed"])) for m, runs in by_level[level].items()}
        arm_rows = {}
        for model in ec.models:
            runs = arms.get(model, [])
            arm_rows[model] = {
                "n": len(runs),
                "params": int(runs[0]["params"]) if runs else 0,
                "epochs_run": _mean([float(r["epochs_run"]) for r in runs]),
                "early_stopped": sum(bool(r["early_stopped"]) for r in runs),
                **{m: _mean([float(r["scores"].get(m, math.nan)) for r in runs]) for m in STUDY_METRICS},
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
        levels[f"{level:g}"] = {"arms": arm_rows, "comparisons": comparisons}
    planned = planned_runs(cfg)
    done = {(float(r["dominance"]), str(r["model"]), int(r["seed"])) for r in summaries} & planned
    complete = done == planned
    return {
        "profile": cfg.profile,
        "runs": len(done),
        "planned_runs": len(planned),
        "complete": complete,
        "levels": levels,
        "targets": _targets(cfg, levels) if complete else [],
    }


def _find(level: Mapping[str, Any], other: str, metric: str) -> dict[str, Any] | None:
    return next((c for c in level["comparisons"] if c["other"] == other and c["metric"] == metric), None)


def _significant(comp: Mapping[str, Any]) -> bool:
    """p < 0.05 in both tests (a NaN p, e.g. from a single run, is not significant)."""
    return bool(comp["welch_p"] < 0.05 and comp["permutation_p"] < 0.05)


def _targets(cfg: EquisegConfig, levels: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's pre-registered targets, judged at the strongest dominance setting."""
    if not levels:
        return []
    ec = cfg.experiment
    strongest = max(levels, key=float)
    level = levels[strongest]
    rows: list[dict[str, Any]] = []

    def add(name: str, requirement: str, comp: dict[str, Any] | None, met: bool) -> None:
        rows.append({"level": strongest, "name": name, "requirement": requirement, "comparison": comp, "met": met})

    for other, margin in ec.emm_margins.items():
        comp = _find(level, other, "emm_avg")
        ok = comp is not None and comp["difference"] >= margin and _significant(comp)
        add(f"EMM avg: {ec.candidate} - {other}", f">= {margin:g} with p < 0.05 (both tests)", comp, ok)
    if ec.ablation:
        comp = _find(level, ec.ablation, "emm_avg")
        ok = comp is not None and comp["difference"] > 0 and _significant(comp)
        add(f"SGM gain: {ec.candidate} - {ec.ablation}", "> 0 with p < 0.05 (both tests)", comp, ok)
    baselines = [m for m in ec.models if m != ec.candidate and m != ec.ablation]
    if baselines:
        best = max(baselines, key=lambda m: level["arms"][m]["clean_miou"])
        comp = _find(level, best, "clean_miou")
        ok = comp is not None and comp["difference"] >= -ec.clean_tolerance
        add(f"clean mIoU: {ec.candidate} - {best} (best baseline)", f">= -{ec.clean_tolerance:g}", comp, ok)
    for other in ec.emm_margins:
        comp = _find(level, other, "balance_ratio")
        ok = comp is not None and comp["low"] > 0
        add(f"balance ratio: {ec.candidate} - {other}", "> 0, CI excludes 0", comp, ok)
    return rows


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _diff(comp: Mapping[str, Any] | None, ratio: bool) -> str:
    if comp is None or math.isnan(comp["difference"]):
        return "n/a"
    digits = 3 if ratio else 1
    return f"{comp['difference']:+.{digits}f} [{comp['low']:+.{digits}f}, {comp['high']:+.{digits}f}]"


def study_markdown(cfg: EquisegConfig, analysis: Mapping[str, Any], figure: str | None = None) -> str:
    """The Markdown section of the study (everything in it derives from the per-run summaries)."""
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
        f"- Differences: {ec.candidate} minus each arm, mean over seeds with a {ec.ci_level:.0%} bootstrap interval "
        f"over runs ({ec.bootstrap_samples} replicates), Welch's t-test p and the permutation test p (exact where "
        "the relabellings can be enumerated); mIoU points, balance ratio 0-1",
        "",
    ]
    if not analysis.get("complete", True):
        lines[2] = lines[2].replace("--analyse-only`", "--analyse-only --interim`")
        lines += [
            f"**Interim: {analysis['runs']} of {analysis['planned_runs']} planned runs.** No conclusion: the study "
            "stops when every planned run is in (fixed before the first run), and only then are the pre-registered "
            "targets judged. These tables show where it stands.",
            "",
        ]
    for name, level in analysis["levels"].items():
        lines += [f"### Dominance {name}", ""]
        lines += ["| arm | params (M) | runs | epochs run (mean) | early-stopped | clean | EMM avg | balance |"]
        lines += ["| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for model, arm in level["arms"].items():
            if not arm["n"]:
                lines.append(f"| {model} | n/a | 0 | n/a | 0 | n/a | n/a | n/a |")
                continue
            lines.append(
                f"| {model} | {arm['params'] / 1e6:.2f} | {arm['n']} | {arm['epochs_run']:.1f} | "
                f"{arm['early_stopped']} | {arm['clean_miou']:.1f} | {arm['emm_avg']:.1f} | "
                f"{arm['balance_ratio']:.3f} |"
            )
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
    if figure:
        lines += [f"![EMM lead of {ec.candidate} against the dial.]({figure})", ""]
    return "\n".join(lines)


def lead_figure(cfg: EquisegConfig, analysis: Mapping[str, Any], path: Path) -> Path | None:
    """EMM avg lead of the candidate over each ``experiment.emm_margins`` arm (cmnext_like first) against the dial,
    with bootstrap intervals and the target margin."""
    ec = cfg.experiment
    others = list(ec.emm_margins) or [m for m in ec.models if m != ec.candidate][:1]
    if not others:
        return None
    fig = new_figure(5.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    for offset, other in enumerate(others):
        xs, ys, lows, highs = [], [], [], []
        for name, level in analysis["levels"].items():
            comp = _find(level, other, "emm_avg")
            if comp is None or math.isnan(comp["difference"]):
                continue
            xs.append(float(name) + 0.01 * offset)
            ys.append(comp["difference"])
            lows.append(comp["difference"] - comp["low"])
            highs.append(comp["high"] - comp["difference"])
        ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=f"{ec.candidate} - {other}")
        if other in ec.emm_margins:
            ax.axhline(ec.emm_margins[other], linestyle=":", linewidth=0.8, color=ax.lines[-1].get_color())
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel(f"dominance of {cfg.data.dominant_modality or 'none'} (data.dominance)")
    ax.set_ylabel("EMM avg lead (mIoU points)")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def write_study_report(
    cfg: EquisegConfig, analysis: Mapping[str, Any], *, write_doc: bool = True, figure: bool = True
) -> dict[str, Path]:
    """``analysis.json`` beside the summaries, the lead figure, and the profile's section of
    ``experiment.results_doc``."""
    out: dict[str, Path] = {}
    folder = summary_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    out["analysis"] = folder / "analysis.json"
    write_json_atomic(out["analysis"], analysis)
    doc = Path(cfg.experiment.results_doc)
    rel = None
    if figure:
        target = doc.parent / "results" / f"{cfg.profile}-lead.png"
        if lead_figure(cfg, analysis, target) is not None:
            out["figure"] = target
            rel = Path(os.path.relpath(target, doc.parent)).as_posix()
    if write_doc:
        update_document(doc, cfg.profile, study_markdown(cfg, analysis, rel), kind="study")
        out["doc"] = doc
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m equiseg.experiments.study``: the study without the CLI's dependencies (a bare GPU box)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--only", help="one run: <dominance>,<model>,<seed>")
    parser.add_argument("--analyse-only", action="store_true")
    parser.add_argument("--interim", action="store_true", help="analyse the summaries there are; judge no target")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.profile, tuple(args.overrides))
    if not args.analyse_only:
        only = None
        if args.only:
            level, model, seed = args.only.split(",")
            only = (float(level), model, int(seed))
        run_study(cfg, progress=not args.no_progress, only=only)
        if only is not None:
            return 0
    analysis = analyse_study(cfg, load_summaries(cfg, interim=args.interim))
    for path in write_study_report(cfg, analysis).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
