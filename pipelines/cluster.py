"""Compile the pipeline for a Kubeflow cluster, submit a run, and schedule a recurring run (KFP v2 API)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from equiseg.config import load_config
from pipelines.retrain import PIPELINE_NAME, build_retrain_pipeline


def compile_pipeline(
    out: Path,
    *,
    target: str = "cluster",
    profile: str = "cluster",
    overrides: list[str] | None = None,
    gpu_image: str | None = None,
) -> Path:
    """Compile the pipeline to ``out`` (YAML IR). ``target=cluster`` applies the platform decoration, with
    ``gpu_image`` (default ``pipeline.gpu_image``) on the steps that request a GPU."""
    if target not in ("local", "cluster"):
        raise ValueError(f"target must be 'local' or 'cluster', got {target!r}")
    cfg = load_config(profile, overrides or [])
    pcfg = dataclasses.replace(cfg.pipeline, gpu_image=gpu_image) if gpu_image else cfg.pipeline
    workers = max(1, cfg.tune.workers)
    pipeline = build_retrain_pipeline(target, tune_workers=workers, platform_config=pcfg)  # type: ignore[arg-type]
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


def parse_params(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pipeline arguments; a VALUE that parses as JSON (numbers, lists, booleans) is passed as such.

    ``overrides=["train.epochs=3"]`` gives a list; ``profile=cluster`` stays a string.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"pipeline parameter {item!r} must be KEY=VALUE, e.g. --param profile=cluster")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def without_cache(package: Path, out_dir: Path) -> Path:
    """A copy of ``package`` in ``out_dir`` with caching off on every task, those inside groups included.

    ``kfp.Client(enable_caching=False)`` (kfp 2.17) rewrites only the root DAG's tasks; every step of this pipeline
    sits inside the exit handler's group, so ``--no-cache`` rewrites the package itself.
    """
    docs = list(yaml.safe_load_all(package.read_text()))
    spec = docs[0]
    for component in [spec["root"], *spec.get("components", {}).values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task["cachingOptions"] = {**task.get("cachingOptions", {}), "enableCache": False}
    out = out_dir / package.name
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def _client(host: str, namespace: str | None) -> Any:
    import kfp

    token = os.environ.get("KFP_TOKEN")
    if namespace:
        return kfp.Client(host=host, namespace=namespace, existing_token=token)
    return kfp.Client(host=host, existing_token=token)


def submit(
    host: str,
    package: Path,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    params: dict[str, Any] | None = None,
    service_account: str | None = None,
    cache: bool = True,
) -> str:
    """Submit one run of a compiled package; returns the KFP run id.

    ``cache=True`` keeps each step's compiled caching option (``pipeline.cached_steps``); ``False`` turns the cache
    off for every step of this run. ``service_account`` is the Kubernetes service account the run's pods use.
    """
    client = _client(host, namespace)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # kfp prints UI links there
        run = client.create_run_from_pipeline_package(
            str(package if cache else without_cache(package, Path(tmp))),
            arguments=dict(params or {}),
            experiment_name=experiment or PIPELINE_NAME,
            run_name=run_name,
            namespace=namespace,
            enable_caching=None if cache else False,
            service_account=service_account,
        )
    return str(run.run_id)


def schedule(
    host: str,
    package: Path,
    *,
    cron: str = "0 0 3 * * *",
    experiment: str | None = None,
    job_name: str = "equiseg-nightly-retrain",
    namespace: str | None = None,
    params: dict[str, Any] | None = None,
    service_account: str | None = None,
    cache: bool = True,
) -> str:
    """Create a recurring run: six-field cron (seconds first), no catch-up, at most one run at a time."""
    if len(cron.split()) != 6:
        raise ValueError(f"KFP cron expressions have six fields, seconds first (e.g. '0 0 3 * * *'); got {cron!r}")
    client = _client(host, namespace)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # kfp prints UI links there
        experiment_id = client.create_experiment(name=experiment or PIPELINE_NAME, namespace=namespace).experiment_id
        job = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=job_name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=dict(params or {}),
            pipeline_package_path=str(package if cache else without_cache(package, Path(tmp))),
            enable_caching=None if cache else False,
            service_account=service_account,
        )
    return str(job.recurring_run_id)
