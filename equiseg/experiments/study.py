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

The plan and file layout are :mod:`equiseg.experiments.study_plan`, the analysis and report
:mod:`equiseg.experiments.study_analysis`; this module runs the study and loads its summaries. It imports neither
mlflow nor kfp: ``python -m equiseg.experiments.study`` runs on a bare GPU box
(``bench/gpu_study.py`` runs many such processes in parallel).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from equiseg.config import ConfigError, EquisegConfig, load_config
from equiseg.experiments.plan import cell_config, eval_hash, train_hash, validate_experiment
from equiseg.experiments.runs import CellRecord, RunBusyError, prepare_claim_data, run_cell, write_json_atomic
from equiseg.experiments.study_analysis import analyse_study, study_markdown, write_study_report
from equiseg.experiments.study_plan import (
    STUDY_FORMAT,
    level_config,
    planned_runs,
    study_levels,
    summary_dir,
    summary_path,
)

__all__ = [
    "EXIT_BUSY",
    "STUDY_FORMAT",
    "analyse_study",
    "level_config",
    "load_summaries",
    "planned_runs",
    "run_study",
    "run_summary",
    "study_levels",
    "study_markdown",
    "summary_dir",
    "summary_path",
    "write_study_report",
]

logger = logging.getLogger(__name__)

#: exit status of ``python -m equiseg.experiments.study --only`` when another process runs that cell (EX_TEMPFAIL)
EXIT_BUSY = 75

_CURVE_KEYS = ("epoch", "train_loss", "val_loss", "val_miou", "clean_miou", "emm_avg", "objective")


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
        try:
            run_study(cfg, progress=not args.no_progress, only=only)
        except RunBusyError as exc:
            logger.error("%s", exc)
            return EXIT_BUSY
        if only is not None:
            return 0
    analysis = analyse_study(cfg, load_summaries(cfg, interim=args.interim))
    for path in write_study_report(cfg, analysis).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
