"""``equiseg registry``: register, promote, approve, roll back and list model versions (MLflow aliases)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

from equiseg.cli.common import config_options, emit, json_option, read_only_tracking_uri, resolve_config
from equiseg.config import EquisegConfig, config_hash

F = TypeVar("F", bound=Callable[..., Any])


def _registry_options(func: F) -> F:
    func = json_option(func)
    func = click.option(
        "--tracking-uri", default=None, help="MLflow tracking/registry URI (default: tracking.uri of the config)."
    )(func)
    return config_options(func)


def _uri(cfg: EquisegConfig, tracking_uri: str | None) -> str:
    from equiseg.tracking import resolve_tracking_uri  # optional: the [mlops] extra (mlflow)

    return resolve_tracking_uri(tracking_uri or cfg.tracking.uri)


def _refused(exc: Exception) -> None:
    click.echo(f"refused: {exc}", err=True)
    sys.exit(1)


@click.group("registry")
def group() -> None:
    """Model registry operations on models:/<gate.model_name> (aliases champion, previous_champion, challenger).

    Stages are never used. Promotion, approval and rollback run under a lock with a compare-and-set on the champion
    version (docs/gate.md); refusals exit 1 with the reason.
    """


@group.command("register")
@_registry_options
@click.option("--model-uri", required=True, help="Logged model to register, e.g. models:/m-<id>.")
@click.option(
    "--verdict",
    "verdict_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="gate.json of this candidate; without it the version cannot be promoted.",
)
@click.option(
    "--mlflow-run-id",
    "--run-id",
    "mlflow_run_id",
    default=None,
    help="MLflow run that produced the model (default: from the model URI).",
)
@click.option(
    "--lineage",
    multiple=True,
    metavar="KEY=VALUE",
    help="Lineage tag, e.g. dataset_version=<md5>.dir, git_commit=..., pipeline_run_id=..., config_hash=... "
    "(repeatable).",
)
def register(
    profile: str,
    overrides: tuple[str, ...],
    tracking_uri: str | None,
    model_uri: str,
    verdict_path: Path | None,
    mlflow_run_id: str | None,
    lineage: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a logged model as a new version with lineage and verdict tags; prints the version. No alias moves."""
    from equiseg.promotion import (  # optional: the [mlops] extra (mlflow)
        GateVerdict,
        VerdictMismatchError,
        register_candidate,
    )

    cfg = resolve_config(profile, overrides)
    tags = {"config_hash": config_hash(cfg)}
    for item in lineage:
        if "=" not in item:
            raise click.UsageError(f"--lineage {item!r} must look like KEY=VALUE")
        key, value = item.split("=", 1)
        tags[key.strip()] = value
    verdict = GateVerdict.from_json(verdict_path.read_text()) if verdict_path else None
    try:
        version = register_candidate(
            model_uri,
            model_name=cfg.gate.model_name,
            verdict=verdict,
            lineage=tags,
            mlflow_run_id=mlflow_run_id,
            tracking_uri=_uri(cfg, tracking_uri),
        )
    except (VerdictMismatchError, TypeError) as exc:  # TypeError: UnsafeModelError, a model equiseg won't load
        _refused(exc)
    else:
        emit(as_json, {"version": version, "model_name": cfg.gate.model_name}, str(version))


@group.command("promote")
@_registry_options
@click.option("--version", "version", required=True, help="Version to promote.")
@click.option(
    "--mode",
    type=click.Choice(["enabled", "dry_run", "manual"]),
    default=None,
    help="Override gate.mode: enabled moves champion, manual sets challenger, dry_run moves nothing.",
)
@click.option("--approver", default=None, help="Who overrides a rollback (with --override-reason).")
@click.option("--override-reason", default=None, help="Why a rolled-back version is promoted again (recorded).")
def promote_cmd(
    profile: str,
    overrides: tuple[str, ...],
    tracking_uri: str | None,
    version: str,
    mode: str | None,
    approver: str | None,
    override_reason: str | None,
    as_json: bool,
) -> None:
    """Promote a version with a passing verdict bound to its checkpoint (champion moves last; previous_champion
    keeps the old one). Runs the serving check on the version first unless it already passed for it. A version
    that was rolled back needs --approver and --override-reason (recorded as tags)."""
    from equiseg.promotion import Override, PromotionError, promote  # optional: the [mlops] extra (mlflow)
    from equiseg.promotion.candidate import serving_options  # optional: the [mlops] extra (mlflow)

    cfg = resolve_config(profile, overrides)
    if bool(approver) != bool(override_reason):
        raise click.UsageError("an override needs both --approver and --override-reason")
    try:
        result = promote(
            cfg.gate.model_name,
            version,
            mode=mode or cfg.gate.mode,  # type: ignore[arg-type]
            tracking_uri=_uri(cfg, tracking_uri),
            lock_uri=cfg.gate.lock_uri,
            override=Override(approver, override_reason) if approver and override_reason else None,
            serving=serving_options(cfg),
        )
    except PromotionError as exc:
        _refused(exc)
    else:
        emit(as_json, {"action": result.action, "message": result.message}, f"{result.action}: {result.message}")


@group.command("approve")
@_registry_options
@click.option("--version", default=None, help="Version to approve (default: the challenger).")
@click.option("--approver", required=True, help="Who approves (recorded as the equiseg.approved_by tag).")
@click.option(
    "--override-reason",
    default=None,
    help="Promote a blocked (failed-verdict) or rolled-back version anyway; why, recorded with the approver.",
)
def approve_cmd(
    profile: str,
    overrides: tuple[str, ...],
    tracking_uri: str | None,
    version: str | None,
    approver: str,
    override_reason: str | None,
    as_json: bool,
) -> None:
    """Approve the challenger (manual mode) or --version: it becomes champion under the same checks as promote.
    With --override-reason a blocked or rolled-back version can be approved; the override is recorded."""
    from equiseg.promotion import PromotionError, approve  # optional: the [mlops] extra (mlflow)
    from equiseg.promotion.candidate import serving_options  # optional: the [mlops] extra (mlflow)

    cfg = resolve_config(profile, overrides)
    try:
        result = approve(
            cfg.gate.model_name,
            version,
            approver=approver,
            tracking_uri=_uri(cfg, tracking_uri),
            lock_uri=cfg.gate.lock_uri,
            override_reason=override_reason,
            serving=serving_options(cfg),
        )
    except PromotionError as exc:
        _refused(exc)
    else:
        emit(as_json, {"action": result.action, "message": result.message}, f"{result.action}: {result.message}")


@group.command("rollback")
@_registry_options
@click.option("--reason", required=True, help="Why (recorded in tags on both versions and the registered model).")
def rollback_cmd(
    profile: str, overrides: tuple[str, ...], tracking_uri: str | None, reason: str, as_json: bool
) -> None:
    """Move champion back to previous_champion."""
    from equiseg.promotion import PromotionError, rollback  # optional: the [mlops] extra (mlflow)

    cfg = resolve_config(profile, overrides)
    try:
        result = rollback(
            cfg.gate.model_name, reason=reason, tracking_uri=_uri(cfg, tracking_uri), lock_uri=cfg.gate.lock_uri
        )
    except PromotionError as exc:
        _refused(exc)
    else:
        emit(as_json, {"action": result.action, "message": result.message}, f"{result.action}: {result.message}")


@group.command("list")
@_registry_options
def list_cmd(profile: str, overrides: tuple[str, ...], tracking_uri: str | None, as_json: bool) -> None:
    """List versions with aliases, gate verdicts, key metrics and lineage (newest first)."""
    from equiseg.promotion import audit_registry, list_versions  # optional: the [mlops] extra (mlflow)

    cfg = resolve_config(profile, overrides)
    uri = read_only_tracking_uri(tracking_uri or cfg.tracking.uri)  # listing never creates a store
    versions = list_versions(cfg.gate.model_name, tracking_uri=uri)
    if as_json:
        click.echo(json.dumps([asdict(v) for v in versions], indent=2))
        return
    if not versions:
        click.echo(f"no versions of {cfg.gate.model_name!r} at {uri}")
        return
    click.echo(f"{'version':>7}  {'aliases':<28} {'gate':<7} {'clean':>6} {'emm':>6} {'worst':>6}  dataset")
    for v in versions:
        gate = {True: "pass", False: "FAIL", None: "-"}[v.gate_passed]
        if v.gate_passed and v.serving_passed is not True:  # e.g. registration killed before its serving check
            gate = "pass*" if v.serving_passed is None else "SERVE!"
        m = v.metrics
        row = [f"{m[k]:6.2f}" if k in m else f"{'-':>6}" for k in ("clean_miou", "emm_avg", "worst_slice_miou")]
        click.echo(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<28} {gate:<7} {' '.join(row)}  "
            f"{v.lineage.get('dataset_version', '-')}"
        )
    if any(v.gate_passed and v.serving_passed is None for v in versions):
        click.echo("pass* = verdict passed, serving check not yet run on the registered version (promote runs it)")
    for problem in audit_registry(cfg.gate.model_name, tracking_uri=uri):
        click.echo(f"WARNING: {problem}", err=True)
