"""``equiseg evaluate``: robustness suite of a stored model on a manifest split, with its report."""

from __future__ import annotations

from pathlib import Path

import click

from equiseg.cli.common import (
    config_options,
    emit,
    json_option,
    out_option,
    progress_option,
    read_only_tracking_uri,
    require_out,
    resolve_config,
)
from equiseg.robustness.evaluate import resolve_device, score_and_report


@click.command("evaluate")
@config_options
@click.option(
    "--model",
    "model_ref",
    required=True,
    help="Checkpoint path (best.pt from `equiseg train`) or MLflow model URI (models:/equiseg@champion).",
)
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Data manifest (manifest.parquet).",
)
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder the manifest's paths are relative to [default: the manifest's folder].",
)
@click.option(
    "--suite",
    type=click.Choice(["clean", "emm", "quick", "full"]),
    help="clean: intact inputs + condition slices; emm: + every missing-modality subset; quick: + EMM, RMM r=0.5, "
    "NM mid, key corruptions; "
    "full: every protocol level and the whole corruption matrix [robustness.suite].",
)
@click.option("--split", help="Manifest split to score [robustness.split].")
@click.option("--seed", type=int, help="Seed of every mask, noise draw and bootstrap [robustness.seed].")
@out_option("Output folder: robustness.json / .md / .html, PNG figures and config.yaml.", legacy=("--report",))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI for models:/ URIs [tracking.uri].")
@progress_option
@json_option
def command(
    profile: str,
    overrides: tuple[str, ...],
    model_ref: str,
    manifest: Path,
    data_root: Path | None,
    suite: str | None,
    split: str | None,
    seed: int | None,
    out_dir: Path | None,
    device: str,
    tracking_uri: str | None,
    progress: bool,
    as_json: bool,
) -> None:
    """Score a model on the robustness suite of the profile and write a report to OUT.

    Missing modalities (EMM) are zero-filled unless the model supports modality subsets (robustness.missing);
    every degradation is seeded, so two models evaluated with the same seed see identical inputs. Prints the
    headline metrics; the full result is OUT/robustness.json.
    """
    from equiseg.tracking import configure_store, is_model_uri, load_model  # optional: the [mlops] extra

    report_dir = require_out(out_dir)
    extra = [f"robustness.{k}={v}" for k, v in (("suite", suite), ("split", split), ("seed", seed)) if v is not None]
    cfg = resolve_config(profile, (*overrides, *extra))
    if is_model_uri(model_ref):  # reading a model never creates a tracking store
        configure_store(read_only_tracking_uri(tracking_uri or cfg.tracking.uri))
    try:
        dev = resolve_device(device)
        model = load_model(model_ref, dev)
        output = score_and_report(
            cfg,
            model,
            model_ref=model_ref,
            manifest=manifest,
            data_root=data_root or manifest.parent,
            out_dir=report_dir,
            device=dev,
            progress=progress,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    metrics = output.result.summary_metrics()
    keys = (
        "clean_miou",
        "emm_avg",
        "emm_e0.1",
        "rmm_r0.5",
        "nm_mid",
        "corrupt_miou_c",
        "relative_robustness",
        "worst_slice_miou",
        "balance_ratio",
    )
    shown = {k: metrics[k] for k in keys if k in metrics}
    payload = {"model": model_ref, "metrics": metrics, "reports": {k: str(v) for k, v in output.paths.items()}}
    lines = [f"{k:>22}: {v:.3f}" for k, v in shown.items()] + [f"report: {output.paths['html']}"]
    emit(as_json, payload, "\n".join(lines))
