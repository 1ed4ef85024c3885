"""``equiseg tune``: Optuna search over the training config; writes the best parameters as an overlay."""

from __future__ import annotations

from pathlib import Path

import click

from equiseg.cli.common import config_options, emit, json_option, out_option, progress_option
from equiseg.cli.progress import TrialProgress
from equiseg.cli.train_cmd import data_paths, overlay_option, resolve_with_overlays
from equiseg.config import ConfigError
from equiseg.tracking import Tracker
from equiseg.tuning import run_study
from equiseg.tuning.storage import default_storage

__all__ = ["command"]


@click.command("tune")
@config_options
@overlay_option
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials to run [default: tune.trials].")
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL, e.g. postgresql+psycopg2://user@host:5432/db "
    "[default: tune.storage, else sqlite <out>/optuna.db].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel worker processes sharing the study (needs a server storage) [default: tune.workers].",
)
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
@out_option("Output folder for trial runs, optuna.db and best.yaml [default: <train.output_dir>/../tune].")
@click.option(
    "--track/--no-track",
    default=True,
    show_default=True,
    help="Log the study as an MLflow run with one nested run per trial.",
)
@progress_option
@json_option
def command(
    profile: str,
    overrides: tuple[str, ...],
    overlays: tuple[Path, ...],
    trials: int | None,
    storage: str | None,
    workers: int | None,
    manifest: Path | None,
    data_root: Path | None,
    out_dir: Path | None,
    track: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """Search tune.search_space with seeded TPE and pruning; objective (clean mIoU + EMM avg) / 2 (points).

    Prints the best parameters and writes them to <out>/best.yaml; train with them via
    `equiseg train --profile P --overlay <out>/best.yaml`.
    """
    cfg = resolve_with_overlays(profile, overlays, overrides)
    manifest_path, root = data_paths(cfg, manifest, data_root)
    out = out_dir or Path(cfg.train.output_dir).parent / "tune"
    tracker = None
    if track:
        tracker = Tracker(cfg.tracking)
    try:
        study_storage = storage or cfg.tune.storage or default_storage(out)
        with TrialProgress(cfg, study_storage, trials=trials, enabled=progress):
            result = run_study(
                cfg,
                manifest=manifest_path,
                data_root=root,
                out_dir=out,
                trials=trials,
                storage=storage,
                workers=workers,
                tracker=tracker,
            )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    payload = {
        "best_params": result.best_params,
        "best_value": round(result.best_value, 4),
        "n_trials": result.n_trials,
        "overlay": str(result.overlay_path),
    }
    emit(
        as_json,
        payload,
        f"best objective {payload['best_value']} after {result.n_trials} trials: {result.best_params}\n"
        f"train with: equiseg train --profile {profile} --overlay {result.overlay_path}",
    )
