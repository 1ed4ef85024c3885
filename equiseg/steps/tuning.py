"""Pipeline steps ``create_study``, ``tune_worker`` and ``select_best_trial``: one Optuna study per pipeline run,
shared by that run's workers (docs/pipeline.md)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import optuna

from equiseg.config import EquisegConfig
from equiseg.steps.run_folder import optuna_db_path, record_facts, run_dir_for, step_dir, timed_step
from equiseg.tracking import Tracker
from equiseg.tuning import make_storage, overlay_overrides, run_study

__all__ = ["create_study", "optuna_storage_for", "select_best_trial", "study_name_for", "tune_worker"]

logger = logging.getLogger(__name__)


def optuna_storage_for(cfg: EquisegConfig, pipeline_run_id: str, storage: str = "") -> str:
    """The study storage: explicit > ``$EQUISEG_OPTUNA_STORAGE`` (a cluster secret) > ``tune.storage`` > sqlite in
    the run folder (one worker only; parallel workers need PostgreSQL)."""
    explicit = storage or os.environ.get("EQUISEG_OPTUNA_STORAGE", "") or cfg.tune.storage
    if explicit:
        return explicit
    return f"sqlite:///{optuna_db_path(run_dir_for(cfg, pipeline_run_id))}"


def study_name_for(cfg: EquisegConfig, pipeline_run_id: str) -> str:
    """One Optuna study per pipeline run, shared by that run's workers."""
    return f"{cfg.tune.study_name}-{pipeline_run_id}"


def create_study(cfg: EquisegConfig, *, pipeline_run_id: str, storage: str = "") -> str:
    """Create the run's study (and the storage schema) once, before the workers fan out.

    Parallel workers that each create the schema of an empty PostgreSQL database race on ``CREATE TABLE``
    (``UniqueViolation``); one creator avoids that. Returns the study name.
    """
    name = study_name_for(cfg, pipeline_run_id)
    folder = step_dir(cfg, pipeline_run_id, "tune")  # also where the default sqlite storage lives
    with timed_step(folder.parent, "create_study"):
        optuna.create_study(
            study_name=name,
            storage=make_storage(optuna_storage_for(cfg, pipeline_run_id, storage)),
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
    storage: str = "",
) -> int:
    """One tuning worker: ``trials`` trials of the run's shared study; returns the finished trials in the study."""
    folder = step_dir(cfg, pipeline_run_id, "tune")
    with timed_step(folder.parent, f"tune_worker_{worker}"):
        result = run_study(
            cfg.replace(**{"tune.study_name": study_name_for(cfg, pipeline_run_id)}),
            manifest=Path(manifest),
            data_root=Path(data_root),
            out_dir=folder / f"worker-{worker}",
            trials=trials,
            storage=optuna_storage_for(cfg, pipeline_run_id, storage),
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


def select_best_trial(cfg: EquisegConfig, *, pipeline_run_id: str, storage: str = "") -> list[str]:
    """The best trial of the run's study as ``key=value`` overrides (empty if no trial completed)."""
    folder = step_dir(cfg, pipeline_run_id, "tune")
    with timed_step(folder.parent, "select_best_trial"):
        overrides = _best_trial_overrides(
            optuna_storage_for(cfg, pipeline_run_id, storage), study_name_for(cfg, pipeline_run_id)
        )
    (folder / "best_overrides.json").write_text(json.dumps(overrides, indent=2))
    record_facts(folder.parent, tuned_overrides=overrides)
    return overrides
