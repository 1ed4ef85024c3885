"""Optuna hyper-parameter search over the training loop (docs/training.md).

**Objective.** Each trial trains ``tune.epochs_per_trial`` epochs and returns the best
``(clean_miou + emm_avg) / 2`` it reached (:func:`equiseg.training.robustness_objective`, the same value that picks
the best checkpoint). A single objective rather than Optuna's multi-objective mode, because Optuna cannot prune
multi-objective studies and the pipeline needs one "best" to promote; the mean keeps a model from winning on clean
data while collapsing when a modality is missing (or the reverse). Every evaluated epoch reports the objective
through :func:`trial_hooks`, so the pruner (``tune.pruner``: median, hyperband or none) stops trials that trail the
others; the loop returns ``stopped`` and the objective raises ``optuna.TrialPruned``.

**Sampler.** TPE seeded with ``tune.sampler_seed`` (+ the worker index, so parallel workers do not propose the same
point); Optuna 5's default ``constant_liar`` keeps parallel workers apart while trials run.

**Storage and workers.** Default: an SQLite file ``<out_dir>/optuna.db`` and one worker. Parallel workers are
separate processes sharing one study through an RDB server (``postgresql+psycopg2://...``); SQLite is refused for
them (Optuna advises against concurrent SQLite writers). Each worker runs a fixed share of the trials, so K workers
x their shares record exactly ``trials`` trials: none lost, none duplicated. Heartbeats mark a crashed worker's
running trial FAILED and re-queue it once.

**Tracking.** With a tracker, the study is one MLflow run and every trial a nested run (opened by hand; Optuna's
``MLflowCallback`` is deprecated) holding the trial's params, metrics and state; the parent gets the best params,
the best value and the overlay.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from equiseg.config import ConfigError, EquisegConfig, TrackingConfig
from equiseg.tracking import Tracker, train_tracked
from equiseg.training import TrainHooks, TrainResult, train
from equiseg.tuning.space import suggest_params, validate_search_space, write_overlay
from equiseg.tuning.storage import default_storage, make_storage

__all__ = [
    "TuningResult",
    "make_pruner",
    "run_study",
    "trial_hooks",
]

logger = logging.getLogger(__name__)

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass(frozen=True)
class TuningResult:
    """Outcome of :func:`run_study`.

    Attributes:
        best_params: dotted config key -> value of the best trial.
        best_value: its objective (mIoU points).
        overlay_path: YAML overlay with ``best_params`` for ``equiseg train --overlay``.
        n_trials: finished (complete or pruned) trials recorded in the study.
        study_name: the Optuna study.
        storage: the storage URL (credentials as given).
    """

    best_params: dict[str, Any]
    best_value: float
    overlay_path: Path
    n_trials: int
    study_name: str = ""
    storage: str = ""


# ------------------------------------------------------------------------------------------------------------------
# storage, sampler, pruner
# ------------------------------------------------------------------------------------------------------------------


def make_pruner(cfg: EquisegConfig) -> optuna.pruners.BasePruner:
    """Pruner from ``tune.pruner`` (the intermediate value is the per-epoch objective)."""
    if cfg.tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if cfg.tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, cfg.tune.epochs_per_trial))
    return optuna.pruners.NopPruner()


def _sampler(cfg: EquisegConfig, trials: int, worker: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(
        seed=cfg.tune.sampler_seed + worker, n_startup_trials=max(1, min(10, trials // 2)), constant_liar=True
    )


def _trial_config(base: EquisegConfig, params: Mapping[str, Any]) -> EquisegConfig:
    return base.replace(
        **params,
        **{
            "train.epochs": max(1, base.tune.epochs_per_trial),
            "train.eval_robustness_every": 1,
            "train.checkpoint_every_steps": 0,
        },
    )


# ------------------------------------------------------------------------------------------------------------------
# objective and workers
# ------------------------------------------------------------------------------------------------------------------


def _report_and_prune(trial: optuna.Trial, epoch: int, metrics: Mapping[str, float]) -> bool:
    """Report an evaluated epoch's objective to ``trial``; True when its pruner says stop."""
    if "objective" not in metrics:
        return False
    trial.report(float(metrics["objective"]), step=epoch)
    return bool(trial.should_prune())


def trial_hooks(trial: optuna.Trial) -> TrainHooks:
    """:class:`~equiseg.training.TrainHooks` that report every evaluated epoch to ``trial`` and stop when pruned."""
    return TrainHooks(should_stop=functools.partial(_report_and_prune, trial))


def _raise_if_pruned(result: TrainResult) -> None:
    if result.stopped:
        objective = result.history[-1].get("objective", float("nan")) if result.history else float("nan")
        raise optuna.TrialPruned(f"pruned after epoch {result.epochs_run} (objective {objective:.2f})")


class _Objective:
    """Callable objective: one short training run per trial, optionally as a nested MLflow run."""

    def __init__(
        self,
        cfg: EquisegConfig,
        manifest: Path,
        data_root: Path,
        out_dir: Path,
        tracking: TrackingConfig | None,
        parent_run_id: str | None,
    ) -> None:
        self.cfg, self.manifest, self.data_root, self.out_dir = cfg, manifest, data_root, out_dir
        self.parent_run_id = parent_run_id
        self.tracker = Tracker(tracking) if tracking is not None else None

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest_params(trial, self.cfg.tune.search_space)
        cfg = _trial_config(self.cfg, params)
        trial_dir = self.out_dir / f"trial_{trial.number:04d}"
        if self.tracker is None:
            result = train(cfg, manifest=self.manifest, data_root=self.data_root, out_dir=trial_dir,
                           hooks=trial_hooks(trial), show_progress=False)  # fmt: skip
            _raise_if_pruned(result)
            return self._value(trial, result.metrics)
        tags = {"optuna.study": self.cfg.tune.study_name, "optuna.trial": str(trial.number)}
        with self.tracker.start_run(
            run_name=f"trial-{trial.number:04d}", nested=True, parent_run_id=self.parent_run_id, tags=tags
        ):
            self.tracker.log_params({f"trial.{k}": v for k, v in params.items()})
            result = train_tracked(
                cfg,
                manifest=self.manifest,
                data_root=self.data_root,
                out_dir=trial_dir,
                tracker=self.tracker,
                hooks=trial_hooks(trial),
                log_model=False,
                show_progress=False,
            )
            if result.stopped:
                self.tracker.set_tags({"optuna.state": "PRUNED"})
            else:
                value = self._value(trial, result.metrics)
                self.tracker.log_metrics({"trial_objective": value})
                self.tracker.set_tags({"optuna.state": "COMPLETE"})
        _raise_if_pruned(result)
        return value

    @staticmethod
    def _value(trial: optuna.Trial, metrics: Mapping[str, float]) -> float:
        for key in ("clean_miou", "emm_avg", "val_miou"):
            if key in metrics:
                trial.set_user_attr(key, float(metrics[key]))
        if "best_objective" not in metrics:
            raise RuntimeError("training returned no robustness objective; the quick suite did not run")
        return float(metrics["best_objective"])


def _run_worker(
    cfg: EquisegConfig,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    storage_url: str,
    n_trials: int,
    total_trials: int,
    worker: int,
    tracking: TrackingConfig | None,
    parent_run_id: str | None,
    threads: int,
) -> None:
    """One worker: load the shared study and run ``n_trials`` trials (also the entry point of worker processes)."""
    if threads > 0:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=cfg.tune.study_name,
        storage=make_storage(storage_url),
        sampler=_sampler(cfg, total_trials, worker),
        pruner=make_pruner(cfg),
    )
    objective = _Objective(cfg, manifest, data_root, out_dir, tracking, parent_run_id)
    study.optimize(objective, n_trials=n_trials, catch=(), gc_after_trial=True)


def run_study(
    cfg: EquisegConfig,
    *,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    trials: int | None = None,
    storage: str | None = None,
    workers: int | None = None,
    tracker: Tracker | None = None,
) -> TuningResult:
    """Run (or continue) the Optuna study ``cfg.tune.study_name`` and write the best parameters as an overlay.

    Args:
        cfg: resolved configuration (``tune:`` section plus the base training setup).
        manifest: dataset manifest; data_root: its root folder.
        out_dir: receives ``trial_NNNN/`` training outputs, ``optuna.db`` (SQLite default) and ``best.yaml``.
        trials: trials to run now (default ``tune.trials``), split over the workers.
        storage: Optuna storage URL (default ``tune.storage``, else SQLite in ``out_dir``).
        workers: parallel worker processes (default ``tune.workers``); more than one needs a server storage.
        tracker: :class:`equiseg.tracking.Tracker`; the study becomes a run with one nested run per trial.

    Raises:
        ConfigError: bad search space, or several workers on SQLite.
        RuntimeError: a worker process failed, or no trial completed.
    """
    n_trials = cfg.tune.trials if trials is None else trials
    n_workers = cfg.tune.workers if workers is None else workers
    if n_trials < 1 or n_workers < 1:
        raise ConfigError(f"trials and workers must be >= 1, got trials={n_trials}, workers={n_workers}")
    n_workers = min(n_workers, n_trials)
    validate_search_space(cfg)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    storage_url = storage or cfg.tune.storage or default_storage(out_dir)
    if n_workers > 1 and storage_url.startswith("sqlite"):
        raise ConfigError(
            f"{n_workers} parallel workers need a server database, not SQLite ({storage_url}); pass "
            "--storage postgresql+psycopg2://user@host:5432/db or use --workers 1"
        )
    optuna.create_study(
        study_name=cfg.tune.study_name,
        storage=make_storage(storage_url),
        direction="maximize",
        sampler=_sampler(cfg, n_trials, 0),
        pruner=make_pruner(cfg),
        load_if_exists=True,
    )
    shares = [n_trials // n_workers + (1 if i < n_trials % n_workers else 0) for i in range(n_workers)]
    tracking = tracker.cfg if tracker is not None else None
    manifest, data_root = Path(manifest).resolve(), Path(data_root).resolve()

    plan = _Plan(cfg, manifest, data_root, out_dir, storage_url, shares, tracking)
    if tracker is None:
        return _execute(plan, None)
    with tracker.start_run(run_name=f"tune-{cfg.tune.study_name}", reuse_active=False) as mlflow_run_id:
        tracker.log_config(cfg)
        tracker.set_tags({"optuna.study": cfg.tune.study_name, "optuna.workers": n_workers})
        tracker.set_lineage_tags()
        result = _execute(plan, mlflow_run_id)
        tracker.log_params({f"best.{k}": v for k, v in result.best_params.items()})
        tracker.log_metrics({"best_objective": result.best_value, "n_trials": float(result.n_trials)})
        tracker.log_artifact(result.overlay_path)
        return result


@dataclass(frozen=True)
class _Plan:
    """What every worker of one :func:`run_study` call shares."""

    cfg: EquisegConfig
    manifest: Path
    data_root: Path
    out_dir: Path
    storage_url: str
    shares: list[int]
    tracking: TrackingConfig | None


def _execute(plan: _Plan, parent_run_id: str | None) -> TuningResult:
    """Run the planned trials (in this process, or one process per worker) and summarise the study."""
    total = sum(plan.shares)
    args = (plan.cfg, plan.manifest, plan.data_root, plan.out_dir, plan.storage_url)
    if len(plan.shares) == 1:
        _run_worker(*args, total, total, 0, plan.tracking, parent_run_id, 0)
    else:
        _run_processes(*args, plan.shares, total, plan.tracking, parent_run_id)
    return _summarise(plan.cfg, plan.storage_url, plan.out_dir)


def _run_processes(
    cfg: EquisegConfig,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    storage_url: str,
    shares: list[int],
    total: int,
    tracking: TrackingConfig | None,
    parent_run_id: str | None,
) -> None:
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // len(shares))
    processes = [
        context.Process(
            target=_run_worker,
            args=(
                cfg,
                manifest,
                data_root,
                out_dir,
                storage_url,
                share,
                total,
                index,
                tracking,
                parent_run_id,
                threads,
            ),
            name=f"equiseg-tune-{index}",
        )
        for index, share in enumerate(shares)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.name for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"tuning worker(s) {failed} failed; see their log output above")


def _summarise(cfg: EquisegConfig, storage_url: str, out_dir: Path) -> TuningResult:
    study = optuna.load_study(study_name=cfg.tune.study_name, storage=make_storage(storage_url))
    finished = study.get_trials(deepcopy=False, states=_FINISHED)
    completed = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError(
            f"study {cfg.tune.study_name!r} has no completed trial ({len(finished)} pruned); run more trials or "
            "use --set tune.pruner=none"
        )
    best = study.best_trial
    overlay = write_overlay(
        best.params,
        out_dir / "best.yaml",
        comment=(
            f"best of Optuna study {cfg.tune.study_name!r}: trial {best.number}, objective "
            f"(clean_miou + emm_avg) / 2 = {best.value:.3f}\napply with: equiseg train --profile {cfg.profile} "
            f"--overlay {out_dir / 'best.yaml'}"
        ),
    )
    logger.info(
        "study %s: best trial %d, objective %.3f, params %s", study.study_name, best.number, best.value, best.params
    )
    return TuningResult(
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else float("nan")),
        overlay_path=overlay,
        n_trials=len(finished),
        study_name=cfg.tune.study_name,
        storage=storage_url,
    )
