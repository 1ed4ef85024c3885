"""Does balance pay? The claim experiment, end to end (docs/results.md).

EQUISeg's abstract (arXiv 2509.24505) claims that equal encoding plus self-guidance keeps segmentation good when the
dominant modality fails. :func:`run_claim` tests that on the synthetic world, where RGB shows 6 of the 8 classes:

1. the ``experiment:`` section is checked (:mod:`equiseg.experiments.plan`);
2. every model of ``experiment.models`` is trained with every seed of ``experiment.seeds`` under the same
   ``train:`` budget on one shared dataset, and each run's best checkpoint is scored with the ``robustness:``
   suite on the held-out split (:mod:`equiseg.experiments.runs`; or, with ``analyse_only``, the finished runs are
   loaded);
3. seed means with two-level bootstrap CIs, paired differences and targets (:mod:`equiseg.experiments.analysis`);
4. ``results.json``, figures and the Markdown report (:mod:`equiseg.experiments.report`); with tracking, one MLflow
   parent run and a child run per model x seed, logged through :class:`equiseg.tracking.Tracker`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from equiseg.config import EquisegConfig, config_hash, save_config
from equiseg.experiments.analysis import ClaimAnalysis, analyse
from equiseg.experiments.plan import cell_config, cell_name, validate_experiment
from equiseg.experiments.report import write_claim_report
from equiseg.experiments.runs import CELL_FILE, CellRecord, load_cells, run_cells, write_json_atomic
from equiseg.provenance import git_commit

if TYPE_CHECKING:
    from equiseg.tracking import Tracker

__all__ = ["RESULTS_FILE", "run_claim"]

RESULTS_FILE = "results.json"


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
    write_json_atomic(out_dir / RESULTS_FILE, analysis.to_dict())
    doc = Path(ec.results_doc) if write_doc else None
    paths = write_claim_report(analysis, cfg, out_dir=out_dir, doc_path=doc)
    if tracking:
        _log_to_mlflow(cfg, analysis, records, paths)
    return analysis


def _parent_run_metrics(analysis: ClaimAnalysis) -> dict[str, float]:
    """The parent run's metrics: headline seed means, the candidate's differences with CIs, targets met."""
    out: dict[str, float] = {}
    for model, values in analysis.metrics.items():
        for key in ("clean", "emm_avg", "emm_min", "miou_c", "balance_ratio"):
            if key in values:
                out[f"{model}/{key}"] = values[key].value
    for model, values in analysis.differences.items():
        for key in ("clean", "emm_avg"):
            if key in values:
                est = values[key]
                out[f"delta_{model}/{key}"] = est.value
                out[f"delta_{model}/{key}_low"] = est.low
                out[f"delta_{model}/{key}_high"] = est.high
    out["targets_met"] = float(sum(o.met for o in analysis.outcomes))
    out["targets_total"] = float(len(analysis.outcomes))
    return out


def _log_to_mlflow(
    cfg: EquisegConfig, analysis: ClaimAnalysis, records: Sequence[CellRecord], paths: Mapping[str, Path]
) -> None:
    from equiseg.tracking import Tracker  # optional: mlflow is the [mlops] extra; cells and analysis run without it

    tracker = Tracker(cfg.tracking, experiment=f"{cfg.tracking.experiment}-claim")
    run_name, tags = f"claim-{cfg.profile}", {"equiseg.kind": "claim-experiment"}
    with tracker.start_run(run_name=run_name, tags=tags) as parent_mlflow_run_id:
        tracker.log_config(cfg)
        commit = analysis.meta.get("git_commit")
        tracker.set_lineage_tags(git_commit=commit if commit and commit != "unknown" else None)
        tracker.log_metrics(_parent_run_metrics(analysis))
        for path in paths.values():
            tracker.log_artifact(path, "claim" if path.is_file() else f"claim/{path.name}")
        for record in records:
            _log_cell(tracker, cfg, record, parent_mlflow_run_id)


def _log_cell(tracker: Tracker, cfg: EquisegConfig, record: CellRecord, parent_mlflow_run_id: str) -> None:
    """A child run per model x seed: its config, per-epoch metrics and curves, test scores and files."""
    run_cfg = cell_config(cfg, record.model, record.seed)
    with tracker.start_run(
        run_name=cell_name(record.model, record.seed),
        parent_run_id=parent_mlflow_run_id,
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
