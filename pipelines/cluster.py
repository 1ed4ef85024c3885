"""Compile the pipeline for a Kubeflow cluster, submit a run, and schedule a recurring run (KFP v2 API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kfp import compiler

from equiseg.config import load_config
from pipelines.retrain import PIPELINE_NAME, build_retrain_pipeline


def compile_pipeline(
    out: Path, *, target: str = "cluster", profile: str = "cluster", overrides: list[str] | None = None
) -> Path:
    """Compile the pipeline to ``out`` (YAML IR). ``target=cluster`` applies the platform decoration."""
    if target not in ("local", "cluster"):
        raise ValueError(f"target must be 'local' or 'cluster', got {target!r}")
    cfg = load_config(profile, overrides or [])
    workers = max(1, cfg.tune.workers)
    pipeline = build_retrain_pipeline(target, tune_workers=workers, platform_config=cfg.pipeline)  # type: ignore[arg-type]
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline,
        package_path=str(out),
        pipeline_parameters={
            "profile": profile,
            "overrides": list(overrides or []),
            "trials_per_worker": -(-cfg.tune.trials // workers),
            "optuna_storage": cfg.tune.storage,
        },
    )
    return out


def _client(host: str) -> Any:
    import kfp

    return kfp.Client(host=host, existing_token=os.environ.get("KFP_TOKEN"))


def submit(host: str, package: Path, *, experiment: str = PIPELINE_NAME, run_name: str | None = None) -> str:
    """Submit one run of a compiled package; returns the KFP run id."""
    client = _client(host)
    run = client.create_run_from_pipeline_package(
        str(package), arguments={}, experiment_name=experiment, run_name=run_name, enable_caching=False
    )
    return str(run.run_id)


def schedule(
    host: str,
    package: Path,
    *,
    cron: str = "0 0 3 * * *",
    experiment: str = PIPELINE_NAME,
    job_name: str = "equiseg-nightly-retrain",
) -> str:
    """Create a recurring run: six-field cron (seconds first), no catch-up, at most one run at a time."""
    if len(cron.split()) != 6:
        raise ValueError(f"KFP cron expressions have six fields, seconds first (e.g. '0 0 3 * * *'); got {cron!r}")
    client = _client(host)
    experiment_id = client.create_experiment(name=experiment).experiment_id
    job = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=job_name,
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        pipeline_package_path=str(package),
        enable_caching=False,
    )
    return str(job.recurring_run_id)
