"""``equiseg pipeline``: run the retraining pipeline locally, or compile / submit / schedule it on Kubeflow.

Registered as a plugin of the ``equiseg`` CLI through the ``equiseg.cli`` entry point (see pyproject.toml), so
the library does not import this package.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from equiseg.cli.common import config_options, emit, json_option, resolve_config


@click.group("pipeline")
def group() -> None:
    """Run the retraining pipeline locally (kfp.local) or compile, submit and schedule it on Kubeflow."""


@group.command("run")
@config_options
@click.option("--source", default="", help="Data source (synthetic, mfnet, pst900, ...); default: data.source.")
@click.option("--ingest-root", default="", help="Root folder of a real dataset to ingest (with --source).")
@click.option(
    "--pipeline-run-id",
    default=None,
    help="Pipeline run id, the run folder's name (default: <profile>-<UTC timestamp>).",
)
@click.option(
    "--runner",
    type=click.Choice(["subprocess", "docker"]),
    default="subprocess",
    show_default=True,
    help="subprocess: steps in this venv; docker: steps in the images `make images` built, against the MLflow image "
    "on PostgreSQL (docs/pipeline.md).",
)
@click.option(
    "--postgres",
    default=None,
    help="--runner docker: PostgreSQL database of MLflow and the promotion lock; Optuna uses <database>_optuna "
    "(default postgresql+psycopg2://postgres@127.0.0.1:5432/equiseg).",
)
@click.option("--mlflow-port", type=int, default=5000, show_default=True, help="--runner docker: MLflow server port.")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another local run on the same output folder or data root to finish (0: refuse at once).",
)
@json_option
def run_cmd(
    profile: str,
    overrides: tuple[str, ...],
    source: str,
    ingest_root: str,
    pipeline_run_id: str | None,
    runner: str,
    postgres: str | None,
    mlflow_port: int,
    wait_seconds: float,
    as_json: bool,
) -> None:
    """Run the whole pipeline on this machine: data, validation, DVC, tuning, training, robustness, gate, registry.

    Prints where the data report, robustness report, gate verdict and model card are, and how to open MLflow.
    Exits 1 if a step failed (the run summary says which); a gate that blocks promotion is not a failure.
    """
    from pipelines.local import DockerSettings, run_local

    resolve_config(profile, overrides)  # a bad profile or override fails here, before any container starts
    settings = DockerSettings(mlflow_port=mlflow_port, **({"postgres": postgres} if postgres else {}))
    # kfp.local prints every task's log to stdout; with --json that stream carries the summary alone.
    task_logs = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with task_logs:
            result = run_local(
                profile,
                overrides,
                data_source=source,
                ingest_root=ingest_root,
                pipeline_run_id=pipeline_run_id,
                runner="docker" if runner == "docker" else "subprocess",
                docker=settings,
                wait_seconds=wait_seconds,
            )
    except (RuntimeError, FileExistsError) as exc:  # a failed step, a busy pipeline, a reused run id, no Docker
        raise click.ClickException(str(exc)) from exc
    summary = {**result.summary, "run_dir": str(result.run_dir)}
    emit(as_json, summary, format_run(result.summary, result.run_dir, result.tracking_uri))


def format_run(summary: dict[str, object], run_dir: Path, tracking_uri: str) -> str:
    """The closing lines of a run: decision and where everything is."""
    reports = summary.get("reports", {})
    assert isinstance(reports, dict)
    lines = [
        "",
        f"equiseg pipeline run {summary.get('pipeline_run_id')}: {summary.get('state')} "
        f"in {summary.get('wall_seconds')} s",
        f"  dataset version : {summary.get('dataset_version', '-')}",
        f"  gate            : {summary.get('gate_decision', '-')}",
        f"  registry        : {summary.get('registry', '-')}",
        f"  run folder      : {run_dir}",
    ]
    for name, path in reports.items():
        lines.append(f"  {name:<16}: {path}")
    ui = (
        tracking_uri
        if tracking_uri.startswith(("http://", "https://"))
        else f"mlflow ui --backend-store-uri {tracking_uri}"
    )
    lines.append(f"  MLflow UI       : {ui}")
    return "\n".join(lines)


@group.command("compile")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("retrain.yaml"), show_default=True)
@click.option(
    "--target",
    type=click.Choice(["cluster", "local"]),
    default="cluster",
    show_default=True,
    help="cluster: add GPU resources, node pool, shm, data PVC and secrets; local: the plain pipeline.",
)
@click.option(
    "--image", default=None, help="Container image of the CPU steps (default: pipeline.image of the profile)."
)
@click.option(
    "--gpu-image", default=None, help="Container image of the GPU steps (default: pipeline.gpu_image of the profile)."
)
@config_options(default_profile="cluster")
@json_option
def compile_cmd(
    out: Path,
    target: str,
    image: str | None,
    gpu_image: str | None,
    profile: str,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Compile the pipeline to KFP v2 YAML for upload to a Kubeflow cluster."""
    import os

    cfg = resolve_config(profile, overrides)
    os.environ["EQUISEG_IMAGE"] = image or cfg.pipeline.image
    from pipelines.cluster import compile_pipeline

    path = compile_pipeline(out, target=target, profile=profile, overrides=list(overrides), gpu_image=gpu_image)
    emit(as_json, {"target": target, "package": str(path)}, f"compiled {target} pipeline to {path}")


def cluster_run_options(func: Any) -> Any:
    """Options shared by ``submit`` and ``schedule``: where the run goes, as whom, with which parameters."""
    options = [
        click.option("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline."),
        click.option(
            "--package",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=Path("retrain.yaml"),
            show_default=True,
            help="Compiled pipeline (equiseg pipeline compile).",
        ),
        click.option("--namespace", default=None, help="Kubernetes namespace (multi-user Kubeflow profiles)."),
        click.option("--experiment", default=None, help="KFP experiment of the run (default: the pipeline's name)."),
        click.option(
            "--param",
            "params",
            multiple=True,
            metavar="KEY=VALUE",
            help="Pipeline parameter (repeatable); JSON values are parsed: --param 'overrides=[\"train.epochs=3\"]'.",
        ),
        click.option(
            "--service-account", default=None, help="Kubernetes service account of the run's pods (the runner's)."
        ),
        click.option(
            "--cache/--no-cache",
            default=True,
            show_default=True,
            help="--cache keeps each step's compiled caching (pipeline.cached_steps); --no-cache turns it off.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_target(options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``submit``/``schedule`` from the options of :func:`cluster_run_options`."""
    from pipelines.cluster import parse_params

    try:
        params = parse_params(options.pop("params"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from exc
    return {**options, "params": params}


@group.command("submit")
@cluster_run_options
@click.option("--run-name", default=None)
@json_option
def submit_cmd(run_name: str | None, as_json: bool, **options: Any) -> None:
    """Submit one run of a compiled pipeline. Auth: a bearer token in $KFP_TOKEN if the endpoint needs one."""
    from pipelines.cluster import submit

    run_id = submit(run_name=run_name, **_run_target(options))
    emit(as_json, {"kfp_run_id": run_id}, f"submitted run {run_id}")


@group.command("schedule")
@cluster_run_options
@click.option(
    "--cron",
    default="0 0 3 * * *",
    show_default=True,
    help="Six-field cron, seconds first (KFP); the default is 03:00 every day.",
)
@click.option("--job-name", default="equiseg-nightly-retrain", show_default=True)
@json_option
def schedule_cmd(cron: str, job_name: str, as_json: bool, **options: Any) -> None:
    """Create a recurring run: no catch-up of missed runs, at most one run at a time."""
    from pipelines.cluster import schedule

    target = _run_target(options)
    try:
        job_id = schedule(cron=cron, job_name=job_name, **target)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    emit(as_json, {"kfp_recurring_run_id": job_id}, f"scheduled recurring run {job_id}")
