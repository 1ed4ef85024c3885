"""Does balance pay? The claim experiment of issue 9 (docs/results.md).

EQUISeg's abstract claims that equal encoding plus self-guidance keeps segmentation good when the dominant
modality fails. :func:`run_claim` tests that on the synthetic world, where RGB shows 6 of the 8 classes:

1. one dataset for everyone (``data:``; a held-out ``test`` split is scored, ``val`` only picks each run's best
   epoch);
2. every model of ``experiment.models`` trained with every seed of ``experiment.seeds`` under the same ``train:``
   budget, optimiser and augmentation (modality dropout included), one folder per run ("cell");
3. each run's best checkpoint scored with the ``robustness:`` suite (``full``: EMM, RMM, NM, corruption matrix,
   balance), keeping per-image confusion matrices;
4. :func:`analyse`: seed means with two-level bootstrap CIs (:mod:`equiseg.experiments.stats`), the candidate's
   paired differences against every other model, and the issue's targets;
5. ``results.json``, figures and the Markdown report (:mod:`equiseg.experiments.report`); with tracking, one MLflow
   parent run and a child run per model x seed.

Cells are resumable: a finished cell (``cell.json`` with the same config hash) is reused, an interrupted one resumes
from its ``last.pt``. Training and evaluation import neither mlflow nor kfp, so the cells also run on a bare GPU
box (``run_claim(cfg, tracking=False)``); their folder can then be brought back and analysed, and logged, here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from equiseg.config import ConfigError, EquisegConfig, config_hash, config_to_dict, save_config, stable_hash
from equiseg.experiments.stats import (
    Estimate,
    cell_replicates,
    headline_metrics,
    image_weights,
    percentile_interval,
    seed_bootstrap,
)
from equiseg.provenance import git_commit
from equiseg.robustness.result import RobustnessResult

if TYPE_CHECKING:
    from equiseg.tracking import Tracker

__all__ = [
    "CellRecord",
    "ClaimAnalysis",
    "ClaimOutcome",
    "analyse",
    "cell_config",
    "eval_hash",
    "load_cells",
    "prepare_claim_data",
    "run_cell",
    "run_cells",
    "run_claim",
    "score_run",
    "train_hash",
    "validate_experiment",
]

logger = logging.getLogger(__name__)

CELL_FILE = "cell.json"
RESULTS_FILE = "results.json"


# ------------------------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------------------------


def validate_experiment(cfg: EquisegConfig) -> None:
    """Check the ``experiment:`` section before hours of training start.

    Raises:
        ConfigError: unknown model names, a candidate / ablation / margin model not in ``models``, no seeds,
            duplicated entries, or a robustness split the data does not hold.
    """
    from equiseg.models import list_models

    ec = cfg.experiment
    known = set(list_models())
    unknown = [m for m in ec.models if m not in known]
    if unknown:
        raise ConfigError(f"experiment.models: unknown model(s) {unknown}; `equiseg model list` shows the valid names")
    if len(set(ec.models)) != len(ec.models) or len(set(ec.seeds)) != len(ec.seeds):
        raise ConfigError("experiment.models and experiment.seeds must not repeat entries")
    if not ec.seeds:
        raise ConfigError("experiment.seeds is empty; give at least one seed, e.g. [0, 1, 2]")
    if ec.candidate not in ec.models:
        raise ConfigError(f"experiment.candidate {ec.candidate!r} is not one of experiment.models {list(ec.models)}")
    if ec.ablation and ec.ablation not in ec.models:
        raise ConfigError(f"experiment.ablation {ec.ablation!r} is not one of experiment.models; add it or set ''")
    stray = [m for m in ec.emm_margins if m not in ec.models]
    if stray:
        raise ConfigError(f"experiment.emm_margins names model(s) {stray} that are not in experiment.models")
    if cfg.robustness.split == "test" and cfg.data.test_fraction <= 0:
        raise ConfigError("robustness.split is 'test' but data.test_fraction is 0; set data.test_fraction, e.g. 0.2")
    if not 0.5 < ec.ci_level < 1.0:
        raise ConfigError(f"experiment.ci_level must be in (0.5, 1), got {ec.ci_level}")


def cell_config(cfg: EquisegConfig, model: str, seed: int) -> EquisegConfig:
    """The config of one run: the shared config with its model name and training seed, and the ``auto``
    missing-modality modes (``train.modality_dropout_mode``, ``robustness.missing``) resolved for that model, so a
    run's hashes say what actually happened."""
    from equiseg.models import supports_missing_modalities

    out_dir = Path(cfg.experiment.output_dir) / "cells" / cell_name(model, seed)
    natural = "drop" if supports_missing_modalities(model) else "zero"
    overrides: dict[str, Any] = {"model.name": model, "train.seed": seed, "train.output_dir": str(out_dir / "train")}
    if cfg.train.modality_dropout_mode == "auto":
        overrides["train.modality_dropout_mode"] = natural
    if cfg.robustness.missing == "auto":
        overrides["robustness.missing"] = natural
    return cfg.replace(**overrides)


def cell_name(model: str, seed: int) -> str:
    return f"{model}-seed{seed}"


def train_hash(cfg: EquisegConfig) -> str:
    """Hash of what decides a run's weights: ``data:``, ``model:`` and ``train:`` (minus paths and worker counts)."""
    raw = config_to_dict(cfg)
    data = {k: v for k, v in raw["data"].items() if k not in ("root", "num_workers", "dvc_remote")}
    train = {k: v for k, v in raw["train"].items() if k not in ("output_dir", "checkpoint_every_steps")}
    if train.get("modality_dropout_mode") == "zero":  # the behaviour before the option existed: old runs still match
        del train["modality_dropout_mode"]
    return stable_hash({"data": data, "model": raw["model"], "train": train})


def eval_hash(cfg: EquisegConfig) -> str:
    """Hash of what decides a run's scores given its weights: ``robustness:`` minus batching and report options."""
    raw = config_to_dict(cfg.robustness)
    return stable_hash({k: v for k, v in raw.items() if k not in ("batch_size", "cache", "examples")})


# ------------------------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellRecord:
    """One finished run (model x seed): where it lives and what it measured."""

    model: str
    seed: int
    path: Path
    train_hash: str
    eval_hash: str
    train_seconds: float
    eval_seconds: float
    best_epoch: int
    history: list[dict[str, float]]
    summary: dict[str, float]
    device: str

    def matches(self, cfg: EquisegConfig) -> tuple[bool, bool]:
        """``(weights match, scores match)`` for the run config ``cfg`` (see :func:`train_hash`, :func:`eval_hash`)."""
        return self.train_hash == train_hash(cfg), self.eval_hash == eval_hash(cfg)

    @property
    def robustness_path(self) -> Path:
        return self.path / "robustness.json"

    @property
    def confusion_path(self) -> Path:
        return self.path / "confusion.npz"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seed": self.seed,
            "train_hash": self.train_hash,
            "eval_hash": self.eval_hash,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "summary": self.summary,
            "device": self.device,
        }

    @classmethod
    def load(cls, path: Path) -> CellRecord:
        raw = json.loads((path / CELL_FILE).read_text())
        return cls(
            model=raw["model"],
            seed=int(raw["seed"]),
            path=path,
            train_hash=raw.get("train_hash", ""),
            eval_hash=raw.get("eval_hash", ""),
            train_seconds=float(raw["train_seconds"]),
            eval_seconds=float(raw["eval_seconds"]),
            best_epoch=int(raw["best_epoch"]),
            history=list(raw["history"]),
            summary={k: float(v) for k, v in raw["summary"].items() if v is not None},
            device=str(raw.get("device", "")),
        )


def prepare_claim_data(cfg: EquisegConfig, *, progress: bool = True) -> tuple[Path, Path]:
    """Generate the experiment's synthetic dataset once under ``<output_dir>/data``; returns ``(manifest, root)``.

    An existing dataset made from the same ``data:`` section is reused (``data/.data-hash``).
    """
    from equiseg.data import generate_from_config

    if cfg.data.source != "synthetic":
        raise ConfigError(
            f"the claim experiment runs on the synthetic world (data.source=synthetic), got {cfg.data.source!r}"
        )
    root = Path(cfg.experiment.output_dir) / "data"
    stamp = root / ".data-hash"
    wanted = stable_hash(config_to_dict(cfg.data))
    manifest = root / "manifest.parquet"
    if manifest.is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return manifest, root
    manifest = generate_from_config(cfg.data, root, progress=progress)
    stamp.write_text(wanted + "\n")
    return manifest, root


def run_cell(
    cfg: EquisegConfig, model: str, seed: int, *, manifest: Path, data_root: Path, progress: bool = True
) -> CellRecord:
    """Train ``model`` with ``seed`` and score its best checkpoint; reuse the cell when it already finished.

    Writes ``<output_dir>/cells/<model>-seed<seed>/``: ``train/`` (checkpoints, config), ``robustness.json``,
    ``confusion.npz`` (per-image confusion matrices of every slice) and, last, ``cell.json``.
    """
    import torch

    from equiseg.data import make_loader
    from equiseg.robustness.evaluate import resolve_device
    from equiseg.training import load_model_from_checkpoint, train

    run_cfg = cell_config(cfg, model, seed)
    path = Path(run_cfg.train.output_dir).parent
    earlier_train_seconds = 0.0  # a re-scored run keeps the time its training took
    if (path / CELL_FILE).is_file():
        record = CellRecord.load(path)
        weights_match, scores_match = record.matches(run_cfg)
        if weights_match and scores_match and record.confusion_path.is_file():
            logger.info("reusing finished run %s", path)
            return record
        (path / CELL_FILE).unlink()
        if not weights_match:
            logger.warning("%s was trained with another config; training it again", path)
            shutil.rmtree(path / "train", ignore_errors=True)
        else:
            logger.info("%s was scored with another robustness config; scoring it again", path)
            earlier_train_seconds = record.train_seconds
    elif (path / "train" / "config.yaml").is_file():
        from equiseg.config import load_config

        if train_hash(load_config(path / "train" / "config.yaml")) != train_hash(run_cfg):
            logger.warning("%s holds an unfinished run of another config; training it afresh", path)
            shutil.rmtree(path / "train", ignore_errors=True)
    started = time.perf_counter()
    result = train(
        run_cfg,
        manifest=manifest,
        data_root=data_root,
        out_dir=Path(run_cfg.train.output_dir),
        resume=True,
        show_progress=progress,
    )
    train_seconds = earlier_train_seconds + time.perf_counter() - started
    device = resolve_device(run_cfg.train.device)
    net, _ = load_model_from_checkpoint(result.best_checkpoint, device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    loader = make_loader(
        manifest,
        data_root,
        modalities=run_cfg.data.modalities,
        split=run_cfg.robustness.split,
        batch_size=run_cfg.robustness.batch_size,
        shuffle=False,
        num_workers=run_cfg.data.num_workers,
    )
    return score_run(
        run_cfg,
        net,
        loader,
        device=device,
        train_seconds=train_seconds,
        best_epoch=int(result.metrics.get("best_epoch", -1)),
        history=result.history,
        progress=progress,
    )


def score_run(
    run_cfg: EquisegConfig,
    net: Any,
    batches: Any,
    *,
    device: Any,
    train_seconds: float,
    best_epoch: int,
    history: Sequence[Mapping[str, float]],
    progress: bool = False,
) -> CellRecord:
    """Score a trained run with ``run_cfg.robustness`` and write its folder: ``robustness.json``, ``confusion.npz``
    and, last, ``cell.json`` (so a folder with ``cell.json`` is always complete)."""
    from equiseg.robustness.evaluate import evaluate_configured

    path = Path(run_cfg.train.output_dir).parent
    model, seed = run_cfg.model.name, run_cfg.train.seed
    started = time.perf_counter()  # scored in fp32 on every device, so degradations are computed identically
    robustness = evaluate_configured(run_cfg, net, batches, device=device, progress=progress, keep_confusion=True)
    eval_seconds = time.perf_counter() - started
    robustness.meta.update({"model": model, "seed": seed, "split": run_cfg.robustness.split})
    robustness.to_json(path / "robustness.json")
    robustness.save_confusion(path / "confusion.npz")
    record = CellRecord(
        model=model,
        seed=seed,
        path=path,
        train_hash=train_hash(run_cfg),
        eval_hash=eval_hash(run_cfg),
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        best_epoch=best_epoch,
        history=[{k: float(v) for k, v in h.items()} for h in history],
        summary=robustness.summary_metrics(),
        device=str(device),
    )
    _write_json_atomic(path / CELL_FILE, record.to_dict())
    return record


def run_cells(cfg: EquisegConfig, *, progress: bool = True) -> list[CellRecord]:
    """Prepare the data and run (or reuse) every model x seed, in config order; no analysis, no tracking.

    This is all a bare GPU box needs (torch, timm, numpy, pyarrow): copy ``experiment.output_dir`` back and run
    ``equiseg experiment claim --analyse-only`` where mlflow and matplotlib are installed.
    """
    from tqdm.auto import tqdm

    validate_experiment(cfg)
    manifest, data_root = prepare_claim_data(cfg, progress=progress)
    records = []
    # seed-major: an interrupted experiment has every model at the first seeds rather than some models at all seeds
    cells = [(m, s) for s in cfg.experiment.seeds for m in cfg.experiment.models]
    bar = tqdm(cells, desc="claim", unit="run", disable=not progress)
    for model, seed in bar:
        bar.set_postfix_str(cell_name(model, seed))
        records.append(run_cell(cfg, model, seed, manifest=manifest, data_root=data_root, progress=progress))
    return records


def load_cells(cfg: EquisegConfig) -> list[CellRecord]:
    """The finished runs of ``experiment.models`` x ``experiment.seeds`` under ``output_dir`` (in config order).

    Raises:
        FileNotFoundError: a run is missing or unfinished; the message names it and says how to produce it.
    """
    records, missing = [], []
    for model in cfg.experiment.models:
        for seed in cfg.experiment.seeds:
            path = Path(cfg.experiment.output_dir) / "cells" / cell_name(model, seed)
            if not (path / CELL_FILE).is_file():
                missing.append(path.name)
                continue
            record = CellRecord.load(path)
            weights_match, scores_match = record.matches(cell_config(cfg, model, seed))
            if not (weights_match and scores_match):
                what = "trained" if not weights_match else "scored"
                raise ConfigError(
                    f"{path} was {what} with another config than this one; analyse it with the profile and --set "
                    "overrides that made it, or re-run without --analyse-only to redo it"
                )
            records.append(record)
    if missing:
        raise FileNotFoundError(
            f"unfinished runs in {cfg.experiment.output_dir}/cells: {', '.join(missing)}; run "
            "`equiseg experiment claim` without --analyse-only to train them"
        )
    return records


# ------------------------------------------------------------------------------------------------------------------
# analysis
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class ClaimOutcome:
    """One target of the issue: what was required, what was measured, and whether it holds."""

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
    """Seed means with two-level bootstrap CIs, the candidate's paired differences and the issue's targets."""
    from tqdm.auto import tqdm

    ec = cfg.experiment
    by_model: dict[str, list[CellRecord]] = {}
    for record in records:
        by_model.setdefault(record.model, []).append(record)
    models = [m for m in ec.models if m in by_model]
    if ec.candidate not in by_model:
        raise ValueError(f"no finished run of the candidate {ec.candidate}")

    results = {(r.model, r.seed): RobustnessResult.from_json(r.robustness_path) for r in records}
    sample_ids = {tuple(res.slices["clean"].sample_ids) for res in results.values()}
    if len(sample_ids) != 1:
        raise ValueError("the runs were scored on different test images; a paired comparison is impossible")
    modalities = list(next(iter(results.values())).meta["modalities"])
    num_images = len(next(iter(sample_ids)))
    absent_as_zero = bool(cfg.robustness.miou_absent_as_zero)

    rng = np.random.default_rng(ec.bootstrap_seed)
    weights = image_weights(num_images, ec.bootstrap_samples, rng)
    point: dict[tuple[str, int], dict[str, float]] = {}
    replicates: dict[tuple[str, int], list[dict[str, float]]] = {}
    for record in tqdm(records, desc="bootstrap", unit="run", disable=not progress):
        res = results[(record.model, record.seed)]
        point[(record.model, record.seed)] = headline_metrics(res.aggregates)
        confusion = RobustnessResult.load_confusion(record.confusion_path)
        replicates[(record.model, record.seed)] = cell_replicates(
            confusion, res.slices, modalities, weights, absent_as_zero=absent_as_zero
        )

    keys = sorted({k for values in point.values() for k in values})
    model_reps: dict[str, np.ndarray] = {}
    metrics: dict[str, dict[str, Estimate]] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    for model in models:
        cells = sorted(by_model[model], key=lambda r: r.seed)
        model_reps[model] = seed_bootstrap([replicates[(r.model, r.seed)] for r in cells], keys, rng)
        per_seed[model] = {k: [point[(r.model, r.seed)].get(k, math.nan) for r in cells] for k in keys}
        metrics[model] = {}
        for j, key in enumerate(keys):
            values = np.array(per_seed[model][key], dtype=np.float64)
            if not np.isfinite(values).any():
                continue
            low, high = percentile_interval(model_reps[model][:, j], ec.ci_level)
            metrics[model][key] = Estimate(float(np.nanmean(values)), low, high)

    differences: dict[str, dict[str, Estimate]] = {}
    for model in models:
        if model == ec.candidate:
            continue
        differences[model] = {}
        for j, key in enumerate(keys):
            if key not in metrics[model] or key not in metrics[ec.candidate]:
                continue
            delta = model_reps[ec.candidate][:, j] - model_reps[model][:, j]
            low, high = percentile_interval(delta, ec.ci_level)
            differences[model][key] = Estimate(metrics[ec.candidate][key].value - metrics[model][key].value, low, high)

    corruption: dict[str, dict[str, dict[str, float]]] = {}
    for model in models:
        table: dict[str, dict[str, list[float]]] = {}
        for record in by_model[model]:
            matrix = (results[(record.model, record.seed)].aggregates.get("corruption") or {}).get("matrix", {})
            for modality, rows in matrix.items():
                for degradation, row in rows.items():
                    for severity, value in row.items():
                        table.setdefault(f"{modality}/{degradation}", {}).setdefault(severity, []).append(float(value))
        corruption[model] = {
            name: {s: math.fsum(v) / len(v) for s, v in row.items()} for name, row in sorted(table.items())
        }

    return ClaimAnalysis(
        models=models,
        seeds=sorted({r.seed for r in records}),
        candidate=ec.candidate,
        modalities=modalities,
        metrics=metrics,
        per_seed=per_seed,
        differences=differences,
        outcomes=_outcomes(cfg, metrics, differences),
        corruption=corruption,
        histories={m: [r.history for r in sorted(by_model[m], key=lambda r: r.seed)] for m in models},
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


def _outcomes(
    cfg: EquisegConfig, metrics: Mapping[str, Mapping[str, Estimate]], differences: Mapping[str, Mapping[str, Estimate]]
) -> list[ClaimOutcome]:
    ec = cfg.experiment

    def at_least(name: str, other: str, diff: Estimate, threshold: float) -> ClaimOutcome:
        """Met when the point estimate clears ``threshold``; confident when the whole CI does."""
        requirement = f"{ec.candidate} - {other} >= {threshold:g}"
        return ClaimOutcome(name, requirement, diff, threshold, diff.value >= threshold, diff.low >= threshold)

    out: list[ClaimOutcome] = []
    baselines = [m for m in differences if m != ec.ablation and "clean" in metrics[m]]
    if baselines:
        best = max(baselines, key=lambda m: metrics[m]["clean"].value)
        name = f"clean mIoU vs best baseline ({best})"
        out.append(at_least(name, best, differences[best]["clean"], -ec.clean_tolerance))
    for model, margin in ec.emm_margins.items():
        if model in differences and "emm_avg" in differences[model]:
            out.append(at_least(f"EMM avg vs {model}", model, differences[model]["emm_avg"], margin))
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


# ------------------------------------------------------------------------------------------------------------------
# the whole experiment
# ------------------------------------------------------------------------------------------------------------------


def run_claim(
    cfg: EquisegConfig,
    *,
    tracking: bool = True,
    analyse_only: bool = False,
    write_doc: bool = True,
    progress: bool = True,
    command: str = "",
) -> ClaimAnalysis:
    """Run (or resume) every model x seed, analyse, write the results and log them.

    Args:
        cfg: resolved config; ``experiment:`` lists models, seeds, targets and output places.
        tracking: log one MLflow parent run and a child per model x seed (needs mlflow; off on a bare GPU box).
        analyse_only: train nothing; analyse the finished runs under ``experiment.output_dir`` (e.g. runs made on a
            GPU box and copied here).
        write_doc: write ``experiment.results_doc`` (figures in ``<doc stem>/`` beside it); results.json and the
            figures are always written under ``output_dir``.
        progress: progress bars.
        command: the command line to cite in the report.
    """
    from equiseg.experiments.report import write_claim_report

    validate_experiment(cfg)
    ec = cfg.experiment
    out_dir = Path(ec.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    started = time.perf_counter()
    records = load_cells(cfg) if analyse_only else run_cells(cfg, progress=progress)
    analysis = analyse(cfg, records, progress=progress)
    analysis.meta.update(
        {
            "profile": cfg.profile,
            "command": command,
            "git_commit": git_commit(mark_dirty=True),
            "config_hash": config_hash(cfg),
            "wall_seconds_this_invocation": time.perf_counter() - started,
            "train_seconds_total": math.fsum(r.train_seconds for r in records),
            "eval_seconds_total": math.fsum(r.eval_seconds for r in records),
            "date": time.strftime("%Y-%m-%d"),
        }
    )
    _write_json_atomic(out_dir / RESULTS_FILE, analysis.to_dict())
    doc = Path(ec.results_doc) if write_doc else None
    paths = write_claim_report(analysis, cfg, out_dir=out_dir, doc_path=doc)
    if tracking:
        _log_to_mlflow(cfg, analysis, records, paths)
    return analysis


def _log_to_mlflow(
    cfg: EquisegConfig, analysis: ClaimAnalysis, records: Sequence[CellRecord], paths: Mapping[str, Path]
) -> None:
    from equiseg.tracking import Tracker

    tracker = Tracker(cfg.tracking, experiment=f"{cfg.tracking.experiment}-claim")
    with tracker.start_run(run_name=f"claim-{cfg.profile}", tags={"equiseg.kind": "claim-experiment"}) as parent_id:
        tracker.log_config(cfg)
        commit = analysis.meta.get("git_commit")
        tracker.set_lineage_tags(git_commit=commit if commit and commit != "unknown" else None)
        headline: dict[str, float] = {}
        for model, values in analysis.metrics.items():
            for key in ("clean", "emm_avg", "emm_min", "miou_c", "balance_ratio"):
                if key in values:
                    headline[f"{model}/{key}"] = values[key].value
        for model, values in analysis.differences.items():
            for key in ("clean", "emm_avg"):
                if key in values:
                    est = values[key]
                    headline.update(
                        {
                            f"delta_{model}/{key}": est.value,
                            f"delta_{model}/{key}_low": est.low,
                            f"delta_{model}/{key}_high": est.high,
                        }
                    )
        headline["targets_met"] = float(sum(o.met for o in analysis.outcomes))
        headline["targets_total"] = float(len(analysis.outcomes))
        tracker.log_metrics(headline)
        for path in paths.values():
            tracker.log_artifact(path, "claim" if path.is_file() else f"claim/{path.name}")
        for record in records:
            _log_cell(tracker, cfg, record, parent_id)


def _log_cell(tracker: Tracker, cfg: EquisegConfig, record: CellRecord, parent_id: str) -> None:
    run_cfg = cell_config(cfg, record.model, record.seed)
    with tracker.start_run(
        run_name=cell_name(record.model, record.seed),
        parent_run_id=parent_id,
        tags={"equiseg.model": record.model, "equiseg.seed": str(record.seed), "equiseg.kind": "claim-run"},
    ):
        tracker.log_config(run_cfg)
        for epoch, values in enumerate(record.history):
            tracker.log_metrics({k: v for k, v in values.items() if k != "epoch"}, step=epoch)
        # the final scores on the test split, apart from the per-epoch val metrics of the same names
        tracker.log_metrics(
            {
                **{f"test/{k}": v for k, v in record.summary.items() if math.isfinite(v)},
                "train_seconds": record.train_seconds,
                "eval_seconds": record.eval_seconds,
                "best_epoch": float(record.best_epoch),
            }
        )
        tracker.log_curves(record.history)
        for name in ("robustness.json", CELL_FILE, "confusion.npz"):
            tracker.log_artifact(record.path / name, "evaluation")


# ------------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------------


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=True))
    os.replace(tmp, path)
