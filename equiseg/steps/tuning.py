"""Pipeline steps ``create_study``, ``tune_worker`` and ``select_best_trial``: one Optuna study per pipeline run,
shared by that run's workers (docs/pipeline.md)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import optuna

from equiseg.config import EquisegConfig
from equiseg.steps.run_folder import TaskFacts, output_folder
from equiseg.tuning.space import overlay_overrides
from equiseg.tuning.storage import make_storage

__all__ = ["create_study", "optuna_storage_for", "select_best_trial", "study_name_for", "tune_worker"]

logger = logging.getLogger(__name__)


def optuna_storage_for(cfg: EquisegConfig, storage: str = "") -> str:
    """The study storage: explicit > ``$EQUISEG_OPTUNA_STORAGE`` (a cluster secret) > ``tune.storage`` > one sqlite
    database beside the runs, ``<pipeline.output_dir>/optuna.db`` (one study per run in it; one worker only, parallel
    workers need PostgreSQL). Every task of a run reaches the study through this storage, never through a file path
    of another task."""
    explicit = storage or os.environ.get("EQUISEG_OPTUNA_STORAGE", "") or cfg.tune.storage
    if explicit:
        return explicit
    out = Path(cfg.pipeline.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{out / 'optuna.db'}"


def study_name_for(cfg: EquisegConfig, pipeline_run_id: str) -> str:
    """One Optuna study per pipeline run, shared by that run's workers."""
    return f"{cfg.tune.study_name}-{pipeline_run_id}"


def create_study(cfg: EquisegConfig, *, pipeline_run_id: str, storage: str = "", facts: TaskFacts | None = None) -> str:
    """Create the run's study (and the storage schema) once, before the workers fan out.

    Parallel workers that each create the schema of an empty PostgreSQL database race on ``CREATE TABLE``
    (``UniqueViolation``); one creator avoids that. Returns the study name.
    """
    facts = facts if facts is not None else TaskFacts()
    name = study_name_for(cfg, pipeline_run_id)
    with facts.timed("create_study"):
        optuna.create_study(
            study_name=name,
            storage=make_storage(optuna_storage_for(cfg, storage)),
            direction="maximize",
            load_if_exists=True,
        )
    return name


def tune_worker(
    cfg: EquisegConfig,
    *,
    manifest: str | Path,
    data_root: str | Path,
    pipeline_run_id: str,
    worker: int,
    trials: int,
    out_dir: str | Path,
    storage: str = "",
    facts: TaskFacts | None = None,
) -> int:
    """One tuning worker: ``trials`` trials of the run's shared study, its files in ``<out_dir>/worker-<worker>``
    (workers never share a folder); returns the finished trials in the study."""
    # torch and mlflow load here: create_study and select_best_trial, in the same module, train nothing
    from equiseg.tracking import Tracker
    from equiseg.tuning.study import run_study  # (the same: torch and mlflow)

    facts = facts if facts is not None else TaskFacts()
    folder = output_folder(cfg, Path(out_dir) / f"worker-{worker}")
    with facts.timed(f"tune_worker_{worker}"):
        result = run_study(
            cfg.replace(**{"tune.study_name": study_name_for(cfg, pipeline_run_id)}),
            manifest=Path(manifest),
            data_root=Path(data_root),
            out_dir=folder,
            trials=trials,
            storage=optuna_storage_for(cfg, storage),
            workers=1,
            tracker=Tracker(cfg.tracking),
        )
    return int(result.n_trials)


def _best_trial_overrides(storage: str, study_name: str) -> list[str]:
    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        logger.warning("study %s has no completed trial; training with the profile's parameters", study_name)
        return []
    return overlay_overrides(study.best_trial.params)


def select_best_trial(
    cfg: EquisegConfig, *, pipeline_run_id: str, storage: str = "", facts: TaskFacts | None = None
) -> list[str]:
    """The best trial of the run's study as ``key=value`` overrides (empty if no trial completed)."""
    facts = facts if facts is not None else TaskFacts()
    with facts.timed("select_best_trial"):
        overrides = _best_trial_overrides(optuna_storage_for(cfg, storage), study_name_for(cfg, pipeline_run_id))
    facts.record(tuned_overrides=overrides)
    return overrides
