"""Run the retraining pipeline on this machine with `kfp.local` (the main job of `make run`).

Tasks write only their KFP outputs, under ``runs/.kfp/<pipeline_run_id>/`` (the pipeline root); after the run the
launcher assembles the run folder ``runs/<pipeline_run_id>/`` from them
(:func:`equiseg.steps.run_folder.collect_run_folder`), so the host's run folder holds only what the launcher writes.
Two runners (docs/pipeline.md, "Running locally"):

- ``subprocess`` (the default): ``kfp.local.SubprocessRunner(use_venv=False)``, one subprocess per step in the
  project venv with the same working directory, so the embedded defaults apply (sqlite MLflow and Optuna under
  ``runs/``, the local DVC remote).
- ``docker``: ``kfp.local.DockerRunner``, each step in the image `make images` built, as a non-root user, with host
  networking. Like on a cluster, a step sees only the pipeline root, one shared data volume (``runs/.docker``: data
  root, DVC project and remote, as the data PVC) and services: the MLflow image serving on PostgreSQL with proxied
  artifacts, Optuna and the promotion lock on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kfp import local

from equiseg.config import EquisegConfig, load_config
from equiseg.provenance import git_commit
from equiseg.steps import read_run_summary, run_dir_for
from equiseg.steps.run_folder import collect_run_folder, exclusive_pipeline_run, new_pipeline_run_id
from pipelines import containers
from pipelines.retrain import build_retrain_pipeline

__all__ = ["DockerSettings", "LocalRun", "new_pipeline_run_id", "pipeline_root_for", "run_local"]

Runner = Literal["subprocess", "docker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRun:
    """Where a local pipeline run left its outputs, and how long it took."""

    pipeline_run_id: str
    run_dir: Path
    wall_seconds: float
    summary: dict[str, object]
    tracking_uri: str  # where the run's MLflow runs and registry are


@dataclass(frozen=True)
class DockerSettings:
    """Services of a ``--runner docker`` run: PostgreSQL and the MLflow server container on it."""

    #: MLflow's backend store, also the promotion lock's database (an advisory lock); Optuna's tables go to
    #: ``<database>_optuna`` (a database of their own: both keep an ``alembic_version`` table).
    postgres: str = field(default_factory=lambda: containers.DEFAULT_POSTGRES)
    #: The MLflow server container ``equiseg-mlflow-<port>``, reused across runs (`make mlflow-server` starts it too).
    mlflow_port: int = 5000


@dataclass(frozen=True)
class _DockerPlatform:
    """What :func:`run_local` hands the Docker runner: config overrides, task environment, the volume, the server."""

    overrides: tuple[str, ...]
    environment: dict[str, str]
    volume: Path
    tracking_uri: str

    def runner(self, pipeline_run_id: str) -> local.DockerRunner:
        from docker.types import Mount

        return local.DockerRunner(
            labels={"io.equiseg.pipeline-run-id": pipeline_run_id},  # docker ps --filter label=... lists its tasks
            # KFP's command replaces the image's ENTRYPOINT on Kubernetes, but docker-py's `command` is only its
            # arguments: `env` runs the task's command as given.
            entrypoint=["/usr/bin/env"],
            network_mode="host",
            user=containers.container_user(),
            mounts=[Mount(str(self.volume), str(self.volume), type="bind")],
            environment=self.environment,
        )


def _docker_platform(cfg: EquisegConfig, settings: DockerSettings) -> _DockerPlatform:
    """Check the engine and the image, prepare the data volume, the databases and the MLflow server.

    Raises:
        containers.DockerError: no engine, no (current) image, PostgreSQL or the MLflow server down.
    """
    client = containers.docker_client()
    try:
        containers.check_project_image(client, cfg.pipeline.image)
        volume = containers.give_to_containers(Path(cfg.pipeline.output_dir).resolve() / ".docker")
        server = containers.start_mlflow_server(
            client,
            backend_store=containers.ensure_database(settings.postgres),
            artifacts=volume / "mlflow-artifacts",
            port=settings.mlflow_port,
            name=f"equiseg-mlflow-{settings.mlflow_port}",
        )
    finally:
        client.close()
    optuna = containers.ensure_database(containers.sibling_database(settings.postgres, "_optuna"))
    return _DockerPlatform(
        overrides=(
            f"tracking.uri={server.url}",
            "tracking.artifact_location=",  # the server proxies artifacts (--serve-artifacts)
            f"data.root={volume / 'data'}",
            f"data.dvc_remote={volume / 'dvc-remote'}",
        ),
        environment={
            "EQUISEG_GATE_LOCK_URI": server.backend_store,
            "EQUISEG_OPTUNA_STORAGE": optuna,
            "EQUISEG_GIT_COMMIT": git_commit(containers.REPO, mark_dirty=True),  # the checkout the image holds
            "EQUISEG_STATE_DIR": "/tmp/equiseg-state",
            "HOME": "/tmp",  # the launcher's uid may not own the image's home
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),  # as `make` sets it (docs/pipeline.md)
        },
        volume=volume,
        tracking_uri=server.url,
    )


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
    runner: Runner = "subprocess",
    docker: DockerSettings | None = None,
    wait_seconds: float = 0.0,
) -> LocalRun:
    """Run the whole pipeline locally and return where its outputs are.

    ``runner="docker"`` runs every step in the project image (:mod:`pipelines.containers`); its services and data
    volume come from ``docker`` (default :class:`DockerSettings`) and their overrides follow ``overrides``. While
    another local run holds the output folder or the data root, this one waits up to ``wait_seconds`` (0: refuses).

    Raises:
        PipelineBusyError: another local run holds the output folder or the data root past ``wait_seconds``
            (nothing is written).
        FileExistsError: ``pipeline_run_id`` already has a run folder.
        RuntimeError: a step failed; the run summary (written by the exit handler) says which and why.
        containers.DockerError: ``runner="docker"`` and the engine, the image or a service is not there.
    """
    platform: _DockerPlatform | None = None
    if runner == "docker":
        platform = _docker_platform(load_config(profile, overrides), docker or DockerSettings())
        overrides = [*overrides, *platform.overrides]
    cfg = load_config(profile, overrides)
    pipeline_run_id = pipeline_run_id or new_pipeline_run_id(profile)
    run_dir = run_dir_for(cfg, pipeline_run_id)
    with exclusive_pipeline_run(cfg, pipeline_run_id, wait_seconds=wait_seconds):
        if run_dir.exists():
            raise FileExistsError(
                f"pipeline run {pipeline_run_id} already has a run folder ({run_dir}); runs never share one: "
                "omit --run-id for a fresh id"
            )
        run_dir.mkdir(parents=True)
        return _run_locked(cfg, profile, overrides, run_dir, pipeline_run_id, data_source, ingest_root, platform)


def _run_locked(
    cfg: EquisegConfig,
    profile: str,
    overrides: Sequence[str],
    run_dir: Path,
    pipeline_run_id: str,
    data_source: str,
    ingest_root: str,
    platform: _DockerPlatform | None,
) -> LocalRun:
    """The body of :func:`run_local`, under the pipeline locks."""
    pipeline_root = pipeline_root_for(cfg, pipeline_run_id)
    task_runner: Any = local.SubprocessRunner(use_venv=False)
    if platform is not None:
        task_runner = platform.runner(pipeline_run_id)
        containers.give_to_containers(pipeline_root)  # the one host folder of this run that tasks write
        os.environ["DOCKER_HOST"] = containers.docker_host()  # kfp's DockerRunner connects with docker.from_env()
    local.init(
        runner=task_runner,
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
    return LocalRun(
        pipeline_run_id=pipeline_run_id,
        run_dir=run_dir,
        wall_seconds=wall,
        summary=summary,
        tracking_uri=cfg.tracking.uri,
    )
