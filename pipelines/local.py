"""Run the retraining pipeline on this machine with `kfp.local` (the main job of `make run`).

Tasks run through ``kfp.local.SubprocessRunner(use_venv=False)``: in the project venv, one subprocess per step,
with the same working directory, so the embedded defaults apply (sqlite MLflow under ``runs/``, the local DVC
remote, sqlite Optuna storage in the run folder).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kfp import local

from equiseg.config import EquisegConfig, load_config
from equiseg.steps import read_run_summary, run_dir_for
from equiseg.steps.run_folder import exclusive_pipeline_run, new_pipeline_run_id
from pipelines.retrain import build_retrain_pipeline

__all__ = ["LocalRun", "new_pipeline_run_id", "run_local"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRun:
    """Where a local pipeline run left its outputs, and how long it took."""

    pipeline_run_id: str
    run_dir: Path
    wall_seconds: float
    summary: dict[str, object]


def run_local(
    profile: str = "smoke",
    overrides: Sequence[str] = (),
    *,
    data_source: str = "",
    ingest_root: str = "",
    pipeline_run_id: str | None = None,
) -> LocalRun:
    """Run the whole pipeline locally and return where its outputs are.

    Raises:
        PipelineBusyError: another local run holds the output folder or the data root (nothing is written).
        FileExistsError: ``pipeline_run_id`` already has a run folder.
        RuntimeError: a step failed; the run summary (written by the exit handler) says which and why.
    """
    cfg = load_config(profile, overrides)
    pipeline_run_id = pipeline_run_id or new_pipeline_run_id(profile)
    run_dir = run_dir_for(cfg, pipeline_run_id)
    with exclusive_pipeline_run(cfg, pipeline_run_id):
        if run_dir.exists():
            raise FileExistsError(
                f"pipeline run {pipeline_run_id} already has a run folder ({run_dir}); runs never share one: "
                "omit --run-id for a fresh id"
            )
        run_dir.mkdir(parents=True)
        return _run_locked(cfg, profile, overrides, run_dir, pipeline_run_id, data_source, ingest_root)


def _run_locked(
    cfg: EquisegConfig,
    profile: str,
    overrides: Sequence[str],
    run_dir: Path,
    pipeline_run_id: str,
    data_source: str,
    ingest_root: str,
) -> LocalRun:
    """The body of :func:`run_local`, under the pipeline locks."""
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_dir / "kfp"),
        raise_on_error=True,
        enable_caching=cfg.pipeline.enable_caching,
    )
    workers = max(1, cfg.tune.workers)
    pipeline = build_retrain_pipeline("local", tune_workers=workers)
    started = time.perf_counter()
    error: Exception | None = None
    with warnings.catch_warnings():
        # The project image name has no "python" in it; SubprocessRunner warns about that for every task.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        try:
            pipeline(
                profile=profile,
                overrides=list(overrides),
                pipeline_run_id=pipeline_run_id,
                data_source=data_source,
                ingest_root=ingest_root,
                trials_per_worker=math.ceil(cfg.tune.trials / workers),
                optuna_storage=cfg.tune.storage,
            )
        except RuntimeError as exc:
            error = exc
    wall = time.perf_counter() - started
    summary = read_run_summary(run_dir)
    summary["wall_seconds"] = round(wall, 2)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if error is not None:
        raise RuntimeError(f"pipeline run {pipeline_run_id} failed; see {run_dir / 'summary.md'}: {error}") from error
    return LocalRun(pipeline_run_id=pipeline_run_id, run_dir=run_dir, wall_seconds=wall, summary=summary)
