"""``equiseg predict``: masks and colour overlays from a stored model (the champion, a version or a checkpoint)."""

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
from equiseg.robustness.evaluate import resolve_device
from equiseg.steps.predict import predict_folder

__all__ = ["command"]


@click.command("predict")
@config_options
@click.option(
    "--model",
    "model_ref",
    default="models:/equiseg@champion",
    show_default=True,
    help="MLflow model URI (models:/<name>@<alias>, models:/<name>/<version>) or a checkpoint path (best.pt).",
)
@click.option(
    "--input",
    "source",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A manifest.parquet (or its folder), or a folder with one sub-folder of images per modality (rgb/, ...).",
)
@out_option("Output folder: masks/*.png (class ids), overlays/*.png (colours over the image), predictions.json.")
@click.option(
    "--modalities",
    "-m",
    default=None,
    help="Comma-separated subset to feed, e.g. rgb,thermal; the others count as missing [every modality].",
)
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path), help="[manifest folder]")
@click.option("--split", default=None, help="Only this manifest split (train, val, test) [every row].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--tracking-uri", default=None, help="MLflow tracking/registry URI for model URIs [tracking.uri].")
@progress_option
@json_option
def command(
    profile: str,
    overrides: tuple[str, ...],
    model_ref: str,
    source: Path,
    out_dir: Path | None,
    modalities: str | None,
    data_root: Path | None,
    split: str | None,
    device: str,
    tracking_uri: str | None,
    progress: bool,
    as_json: bool,
) -> None:
    """Segment raw images with a stored model; normalisation happens here, not in your code.

    Example: equiseg predict --model models:/equiseg@champion --input photos/ --out masks/ -m rgb,thermal
    """
    from equiseg.tracking import configure_store, is_model_uri, load_model  # optional: the [mlops] extra (mlflow)

    out = require_out(out_dir)
    cfg = resolve_config(profile, overrides)
    subset = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    if is_model_uri(model_ref):  # reading a model never creates a tracking store
        configure_store(read_only_tracking_uri(tracking_uri or cfg.tracking.uri))
    dev = resolve_device(device)
    try:
        model = load_model(model_ref, dev)
        summary = predict_folder(
            model, source, out, model_ref=model_ref, modalities=subset, data_root=data_root, split=split,
            device=dev, progress=progress,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    text = (
        f"{len(summary.samples)} samples from {', '.join(summary.modalities)}"
        + (f" (missing: {', '.join(summary.missing)})" if summary.missing else "")
        + f" in {summary.seconds:.1f} s\nmasks: {out / 'masks'}\noverlays: {out / 'overlays'}"
    )
    emit(as_json, summary.to_dict(), text)
