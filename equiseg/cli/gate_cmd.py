"""``equiseg gate``: score a candidate and the current champion on the same data and decide on promotion."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from equiseg.cli.common import config_options, emit, json_option, resolve_config


@click.command("gate")
@config_options
@click.option(
    "--candidate", required=True, help="Candidate model: a checkpoint path or an MLflow model URI (models:/...)."
)
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Data manifest; its validation split is the evaluation data for candidate AND champion.",
)
@click.option(
    "--data-root", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Data root."
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option(
    "--tracking-uri", default=None, help="MLflow tracking/registry URI (default: tracking.uri of the config)."
)
@click.option(
    "--mlflow-run-id",
    "--run-id",
    "mlflow_run_id",
    default=None,
    help="MLflow run of the candidate; gate.json and gate.md are logged to it.",
)
@json_option
def command(
    profile: str,
    overrides: tuple[str, ...],
    candidate: str,
    manifest: Path,
    data_root: Path,
    out_dir: Path,
    tracking_uri: str | None,
    mlflow_run_id: str | None,
    as_json: bool,
) -> None:
    """Run the robustness promotion gate and write OUT/gate.json and OUT/gate.md.

    The champion (models:/<gate.model_name>@champion) is re-scored on exactly the candidate's evaluation data,
    suite and seed in this run; with no champion only the value floors apply. Exits 0 when the candidate passes,
    1 when it is blocked (so CI and pipelines can branch on it), 2 on usage errors. Policy: the gate: section of
    the profile (see docs/gate.md).
    """
    from equiseg.promotion import run_gate  # optional: the [mlops] extra (mlflow)

    cfg = resolve_config(profile, overrides)
    verdict = run_gate(
        cfg,
        candidate=candidate,
        manifest=manifest,
        data_root=data_root,
        out_dir=out_dir,
        tracking_uri=tracking_uri,
        mlflow_run_id=mlflow_run_id,
    )
    lines = [f"gate {verdict.headline()}", *(f"  - {reason}" for reason in verdict.reasons)]
    payload = {**verdict.to_dict(), "report": str(out_dir / "gate.md")}
    emit(as_json, payload, "\n".join([*lines, f"report: {out_dir / 'gate.md'}"]))
    if not verdict.passed:
        sys.exit(1)
