"""``equiseg config``: show and validate configuration profiles."""

from __future__ import annotations

from pathlib import Path

import click

from equiseg.cli.common import config_options, emit, json_option, resolve_config
from equiseg.config import available_profiles, config_dir, config_to_dict, config_to_yaml, flatten_config


@click.group("config")
def group() -> None:
    """Show, validate and list configuration profiles (configs/*.yaml).

    Precedence: dataclass defaults < profile YAML < --set overrides. Every load checks the values' types and the
    names they refer to (model, modalities, experiment models, degradation severities).
    """


@group.command("show")
@config_options
@click.option("--flat", is_flag=True, help="Print dot-keys as logged to MLflow instead of YAML.")
@json_option
def show(profile: str, overrides: tuple[str, ...], flat: bool, as_json: bool) -> None:
    """Print the resolved configuration of a profile with overrides applied."""
    cfg = resolve_config(profile, overrides)
    if flat:
        flat_cfg = flatten_config(cfg)
        emit(as_json, flat_cfg, lambda: "\n".join(f"{k}={v}" for k, v in flat_cfg.items()))
    else:
        emit(as_json, config_to_dict(cfg), lambda: config_to_yaml(cfg).rstrip("\n"))


@group.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def validate(paths: tuple[Path, ...], as_json: bool) -> None:
    """Validate YAML config files (default: every profile in configs/). Exits 2 on the first invalid file."""
    targets = list(paths) or sorted(config_dir().glob("*.yaml"))
    for path in targets:
        resolve_config(str(path), ())
        if not as_json:
            click.echo(f"ok  {path}")
    if as_json:
        emit(True, [{"path": str(p), "ok": True} for p in targets], "")


@group.command("list")
@json_option
def list_profiles(as_json: bool) -> None:
    """List the available profiles."""
    names = available_profiles()
    emit(as_json, names, lambda: "\n".join(names))
