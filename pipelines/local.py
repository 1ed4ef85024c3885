"""Run the retraining pipeline on this machine with `kfp.local` (the main job of `make run`).

Tasks run through ``kfp.local.SubprocessRunner(use_venv=False)``: in the project venv, one subprocess per step,
with the same working directory, so the embedded defaults apply (sqlite MLflow and Optuna under ``runs/``, the
local DVC remote). Tasks write only their KFP outputs, under ``runs/.kfp/<pipeline_run_id>/`` (the pipeline root);
after the run the launcher assembles the run folder ``runs/<pipeline_run_id>/`` from them
(:func:`equiseg.steps.run_folder.collect_run_folder`), so the host's run folder holds only what the launcher writes.
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
from equiseg.steps.run_folder import collect_run_folder, exclusive_pipeline_run, new_pipeline_run_id
from pipelines.retrain import build_retrain_pipeline

__all__ = ["LocalRun", "new_pipeline_run_id", "pipeline_root_for", "run_local"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRun:
    """Where a local pipeline run left its outputs, and how long it took."""

    pipeline_run_id: str
    run_dir: Path
    wall_seconds: float
    summary: dict[str, object]


def pipeline_root_for(cfg: EquisegConfig, pipeline_run_id: str) -> Path:
    """Where ``kfp.local`` keeps one run's task outputs (beside the run folders, never inside one)."""
    return Path(cfg.pipeline.output_dir).resolve() / ".kfp" / pipeline_run_id


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
    pipeline_root = pipeline_root_for(cfg, pipeline_run_id)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
        enable_caching=bool(cfg.pipeline.cached_steps),
        cache_root=str(pipeline_root.parent / ".cache"),  # shared by runs, or a cached step could never hit
    )
    workers = max(1, cfg.tune.workers)
    pipeline = build_retrain_pipeline("local", tune_workers=workers, platform_config=cfg.pipeline)
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
    wall = round(time.perf_counter() - started, 2)
    facts: dict[str, object] = {}
    jobs = sorted(pipeline_root.iterdir()) if pipeline_root.is_dir() else []
    for job_dir in (j for j in jobs if j.is_dir() and not j.name.startswith(".")):
        facts = collect_run_folder(job_dir, run_dir)  # one job per run id: the run folder from its task outputs
    summary_json = run_dir / "summary.json"
    written = json.loads(summary_json.read_text()) if summary_json.is_file() else facts  # no exit handler: facts
    summary_json.write_text(json.dumps({**written, "wall_seconds": wall}, indent=2, default=str))
    summary = read_run_summary(run_dir)
    if error is not None:
        raise RuntimeError(f"pipeline run {pipeline_run_id} failed; see {run_dir / 'summary.md'}: {error}") from error
    return LocalRun(pipeline_run_id=pipeline_run_id, run_dir=run_dir, wall_seconds=wall, summary=summary)
