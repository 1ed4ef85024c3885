"""``equiseg train``: train a model from a profile, with overlays, resume and MLflow tracking (docs/training.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from equiseg.cli.common import config_options, emit, json_option, progress_option, resolve_config
from equiseg.config import ConfigError, EquisegConfig
from equiseg.training import CheckpointError, train
from equiseg.training.distributed import cleanup_distributed

__all__ = ["command", "data_paths", "resolve_with_overlays"]


def resolve_with_overlays(profile: str, overlays: tuple[Path, ...], overrides: tuple[str, ...]) -> EquisegConfig:
    """Profile < overlays (in order) < ``--set`` overrides; exits with a usage error on invalid values."""
    overlay_items: list[str] = []
    if overlays:
        from equiseg.tuning import load_overlay  # optional: the [mlops] extra (optuna), needed for overlays only

        try:
            overlay_items = [item for path in overlays for item in load_overlay(path)]
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
    return resolve_config(profile, (*overlay_items, *overrides))


def data_paths(cfg: EquisegConfig, manifest: Path | None, data_root: Path | None) -> tuple[Path, Path]:
    """Resolve ``--manifest`` (default ``<data.root>/manifest.parquet``) and ``--data-root`` (the manifest's folder)."""
    manifest_path = manifest or Path(cfg.data.root) / "manifest.parquet"
    if not manifest_path.is_file():
        raise click.UsageError(
            f"manifest {manifest_path} not found; generate data first (equiseg data synth --profile "
            f"{cfg.profile}) or pass --manifest PATH"
        )
    return manifest_path, data_root or manifest_path.parent


overlay_option = click.option(
    "--overlay",
    "overlays",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML overlay applied on top of the profile, before --set (e.g. best.yaml from `equiseg tune`). Repeatable.",
)


@click.command("train")
@config_options
@overlay_option
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset manifest.parquet [default: <data.root>/manifest.parquet].",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder the manifest paths are relative to [default: the manifest's folder].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder for config.yaml, last.pt, best.pt, metrics.json [default: train.output_dir].",
)
@click.option("--resume", is_flag=True, help="Continue from <out>/last.pt if it exists (epoch or mid-epoch).")
@click.option(
    "--resume-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Continue from this checkpoint instead of <out>/last.pt.",
)
@click.option(
    "--track/--no-track",
    default=True,
    show_default=True,
    help="Log the run to MLflow at tracking.uri (params, metrics, figures, the model).",
)
@click.option("--dataset-version", default=None, help="Lineage tag: dataset version id (e.g. the DVC .dir md5).")
@click.option("--pipeline-run-id", default=None, help="Lineage tag: id of the pipeline run this training belongs to.")
@progress_option
@json_option
def command(
    profile: str,
    overrides: tuple[str, ...],
    overlays: tuple[Path, ...],
    manifest: Path | None,
    data_root: Path | None,
    out_dir: Path | None,
    resume: bool,
    resume_from: Path | None,
    track: bool,
    dataset_version: str | None,
    pipeline_run_id: str | None,
    progress: bool,
    as_json: bool,
) -> None:
    """Train cfg.model.name on the train split; keep the best checkpoint by (clean mIoU + EMM avg) / 2.

    Runs on CPU or one GPU as is, and on several GPUs (or CPU processes) under torchrun, e.g.
    `torchrun --nproc-per-node 2 $(which equiseg) train --profile gpu`; only rank 0 evaluates, logs and writes
    checkpoints. A run killed at any point continues with --resume.
    """
    cfg = resolve_with_overlays(profile, overlays, overrides)
    manifest_path, root = data_paths(cfg, manifest, data_root)
    out = out_dir or Path(cfg.train.output_dir)
    resume_arg: Path | bool | None = resume_from or (True if resume else None)
    try:
        result = _run(cfg, manifest_path, root, out, resume_arg, progress, track, dataset_version, pipeline_run_id)
    except (CheckpointError, ConfigError) as exc:  # a refused resume, a full disk, classes against the manifest
        raise click.ClickException(str(exc)) from exc
    cleanup_distributed()  # leave the torchrun process group cleanly (no-op in one process)
    if int(os.environ.get("RANK", "0")) == 0:
        payload = {
            "best_checkpoint": str(result.best_checkpoint),
            "last_checkpoint": str(result.last_checkpoint),
            "epochs_run": result.epochs_run,
            "mlflow_run_id": result.mlflow_run_id,
            "model_uri": result.model_uri,
            "metrics": {k: round(v, 4) for k, v in result.metrics.items() if not k.startswith("miou/")},
        }
        lines = [f"{k}: {v}" for k, v in payload.items() if k != "metrics" and v is not None]
        lines += [f"{k:>22}: {v}" for k, v in payload["metrics"].items()]
        emit(as_json, payload, "\n".join(lines))


def _run(
    cfg: EquisegConfig,
    manifest_path: Path,
    root: Path,
    out: Path,
    resume_arg: Path | bool | None,
    progress: bool,
    track: bool,
    dataset_version: str | None,
    pipeline_run_id: str | None,
) -> Any:
    """Train with or without tracking; returns the ``TrainResult``."""
    if not track:
        return train(
            cfg, manifest=manifest_path, data_root=root, out_dir=out, resume=resume_arg, show_progress=progress
        )
    from equiseg.tracking import Tracker, train_tracked  # optional: the [mlops] extra

    return train_tracked(
        cfg,
        manifest=manifest_path,
        data_root=root,
        out_dir=out,
        tracker=Tracker(cfg.tracking),
        resume=resume_arg,
        show_progress=progress,
        lineage={"dataset_version": dataset_version, "pipeline_run_id": pipeline_run_id},
    )
