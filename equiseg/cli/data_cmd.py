"""``equiseg data``: generate, ingest, validate and version datasets (docs/data.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from equiseg.cli.common import (
    config_options,
    emit,
    json_option,
    out_option,
    progress_option,
    require_out,
    resolve_config,
)
from equiseg.config import save_config
from equiseg.data.io import DEFAULT_MAX_PIXELS
from equiseg.data.manifest import ManifestError, manifest_info, read_manifest
from equiseg.data.manifest_rules import check_manifest_rules
from equiseg.data.readers import ingest
from equiseg.data.synthetic import generate_synthetic
from equiseg.data.validation import validate_dataset
from equiseg.expectations import run_manifest_suite
from equiseg.versioning import version_data


def _modalities(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    mods = tuple(m.strip() for m in text.split(",") if m.strip())
    if not mods:
        raise click.BadParameter("give at least one modality, e.g. rgb,depth,thermal")
    return mods


@click.group("data")
def group() -> None:
    """Build, check and version the multimodal data every run starts from.

    \b
    synth     procedural RGB / depth / thermal (+ lidar, event, hha) world with labels
    ingest    manifest for a real dataset layout (MFNet, PST900, NYUv2, DeLiVER, MUSES)
    validate  GX manifest suite + pixel checks; quarantine, stats, drift, report.html
    version   dvc add + push; prints the dataset version id (the .dir md5)
    """


@group.command("synth")
@config_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Output folder [data.root].")
@click.option("--samples", type=int, help="Number of scenes [data.samples].")
@click.option("--size", type=int, help="Side of the square images in pixels [data.image_size].")
@click.option("--modalities", help="Comma-separated: rgb,depth,thermal,lidar,event,hha [data.modalities].")
@click.option("--seed", type=int, help="Seed; the same seed gives byte-identical files [data.seed].")
@click.option("--conditions/--no-conditions", default=None, help="Tag night/fog scenes [data.conditions].")
@click.option("--num-classes", type=int, help="Use only the first K classes (2-8) [data.num_classes].")
@click.option(
    "--overwrite", is_flag=True, help="Allow a non-empty --out; only files an earlier synth wrote are removed."
)
@progress_option
@json_option
def synth(
    profile: str,
    overrides: tuple[str, ...],
    out_dir: Path | None,
    samples: int | None,
    size: int | None,
    modalities: str | None,
    seed: int | None,
    conditions: bool | None,
    num_classes: int | None,
    overwrite: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """Generate the synthetic multimodal world; options default to the profile's data section.

    `equiseg data synth --profile smoke --out data` reproduces the dataset tracked by data.dvc. A non-empty folder
    is refused unless --overwrite; then only the files an earlier synth listed in its manifest are removed, never
    anything else. No config.yaml is written into the data folder (it would change the DVC hash); the generator
    parameters are in the manifest metadata.
    """
    cfg = resolve_config(profile, overrides).data
    try:
        manifest = generate_synthetic(
            out_dir or Path(cfg.root),
            samples=samples if samples is not None else cfg.samples,
            size=size if size is not None else cfg.image_size,
            modalities=_modalities(modalities) or cfg.modalities,
            seed=seed if seed is not None else cfg.seed,
            conditions=conditions if conditions is not None else cfg.conditions,
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
            num_classes=num_classes if num_classes is not None else cfg.num_classes,
            progress=progress,
            overwrite=overwrite,
        )
    except (FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    emit(as_json, {"manifest": str(manifest)}, f"manifest: {manifest}")


@group.command("ingest")
@click.option("--format", "fmt", required=True, help="Layout: mfnet, mfnet_cmx, pst900, nyuv2, deliver, muses.")
@click.option(
    "--root", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Dataset top folder."
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Manifest folder."
)
@click.option("--modalities", help="Comma-separated subset (default: every modality the layout provides).")
@click.option(
    "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, show_default=True, help="Refuse images above H×W pixels."
)
@progress_option
@json_option
def ingest_cmd(
    fmt: str, root: Path, out_dir: Path, modalities: str | None, max_pixels: int, progress: bool, as_json: bool
) -> None:
    """Write OUT/manifest.parquet for a real dataset; paths stay relative to ROOT (no pixels are copied).

    Every sample found is a row; a sample with a broken file (empty, unreadable, missing modality, not an image,
    too large, a link leaving ROOT, a duplicate id, a stray file) is marked with a reason code and quarantined by
    `equiseg data validate --manifest OUT --out R` (the manifest records ROOT).
    """
    try:
        result = ingest(
            fmt, root, out_dir, modalities=_modalities(modalities), max_pixels=max_pixels, progress=progress
        )
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from exc
    payload = {
        "manifest": str(result.manifest),
        "samples_found": result.samples_found,
        "samples_ok": result.samples_ok,
        "samples_marked": result.samples_marked,
        "reason_counts": result.reason_counts,
    }
    lines = [
        f"found {result.samples_found} samples: {result.samples_ok} to validate, "
        f"{result.samples_marked} marked for quarantine"
    ]
    if result.reason_counts:
        lines.append("reasons: " + ", ".join(f"{k}={v}" for k, v in result.reason_counts.items()))
    lines.append(f"manifest: {result.manifest}")
    emit(as_json, payload, "\n".join(lines))


@group.command("validate")
@config_options
@click.option(
    "--manifest", required=True, type=click.Path(exists=True, path_type=Path), help="manifest.parquet (or its folder)."
)
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder the manifest paths are relative to [the root the manifest records, else its folder].",
)
@click.option(
    "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, show_default=True, help="Refuse images above H×W pixels."
)
@out_option("Output folder (reports, validated/quarantine parquet, stats.json).", legacy=("--report",))
@click.option("--num-classes", type=int, help="Class count [manifest metadata, else data.num_classes].")
@click.option(
    "--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="stats.json to drift-check."
)
@click.option("--max-quarantine-fraction", type=float, help="Block above this share [data.quarantine_max_fraction].")
@click.option("--drift-threshold", type=float, help="Block above this distance [data.drift_threshold].")
@click.option("--workers", type=int, help="Pixel-validator processes [data.num_workers, at least 1].")
@click.option(
    "--gx/--no-gx",
    default=True,
    show_default=True,
    help="Run the manifest rules as a great-expectations suite with Data Docs (--no-gx: the same rules in Python).",
)
@progress_option
@json_option
def validate(
    profile: str,
    overrides: tuple[str, ...],
    manifest: Path,
    data_root: Path | None,
    out_dir: Path | None,
    num_classes: int | None,
    reference: Path | None,
    max_quarantine_fraction: float | None,
    drift_threshold: float | None,
    workers: int | None,
    gx: bool,
    max_pixels: int,
    progress: bool,
    as_json: bool,
) -> None:
    """Validate a dataset; exit 0 on pass, 1 with a readable summary when a blocking rule fails.

    Writes OUT/{validated,quarantine}.parquet, stats.json (use it as the next --reference), report.html
    (self-contained) and gx_docs/ (Great Expectations Data Docs, not with --no-gx), plus config.yaml.
    """
    report_dir = require_out(out_dir)
    cfg = resolve_config(profile, overrides)
    manifest_file = manifest / "manifest.parquet" if manifest.is_dir() else manifest
    try:
        info = manifest_info(read_manifest(manifest_file))
        result = validate_dataset(
            manifest_file,
            data_root,
            report_dir,
            num_classes=num_classes or info.num_classes or cfg.data.num_classes,
            ignore_index=cfg.data.ignore_index,
            max_quarantine_fraction=(
                max_quarantine_fraction if max_quarantine_fraction is not None else cfg.data.quarantine_max_fraction
            ),
            reference_profile=reference,
            drift_threshold=drift_threshold if drift_threshold is not None else cfg.data.drift_threshold,
            workers=workers if workers is not None else max(1, cfg.data.num_workers),
            manifest_checks=run_manifest_suite if gx else check_manifest_rules,
            progress=progress,
            max_pixels=max_pixels,
        )
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from exc
    save_config(cfg, report_dir / "config.yaml")
    payload = {"passed": result.passed, "summary": result.summary, "report": str(result.report_path)}
    emit(as_json, payload, f"{result.summary}\nreport: {result.report_path}")
    if not result.passed:
        raise SystemExit(1)


@group.command("version")
@config_options
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="[data.root]")
@click.option(
    "--repo-root",
    default=Path("."),
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="DVC project root (a Git checkout, or any folder: DVC then runs without SCM).",
)
@click.option("--remote", help="Local folder or s3:// URL [data.dvc_remote].")
@click.option("--no-push", is_flag=True, help="Only `dvc add`; do not push to the remote.")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
def version(
    profile: str,
    overrides: tuple[str, ...],
    data_dir: Path | None,
    repo_root: Path,
    remote: str | None,
    no_push: bool,
    as_json: bool,
) -> None:
    """`dvc add` the data folder, push it, and print the dataset version id (the .dir md5 of its .dvc file)."""
    cfg = resolve_config(profile, overrides).data
    target = data_dir or Path(cfg.root)
    try:
        result = version_data(target, repo_root=repo_root, remote=remote or cfg.dvc_remote, push=not no_push)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        payload = {
            "version_id": result.version_id,
            "dvc_file": str(result.dvc_file),
            "remote_url": result.remote_url,
            "nfiles": result.nfiles,
            "size": result.size,
        }
        click.echo(json.dumps(payload))
    else:
        click.echo(f"version_id: {result.version_id}")
        click.echo(f"dvc_file: {result.dvc_file}")
        click.echo(f"remote: {result.remote_url}")
