"""``equiseg config``: show and validate configuration profiles."""

from __future__ import annotations

from pathlib import Path

import click

from equiseg.cli.common import config_options, resolve_config
from equiseg.config import available_profiles, config_dir, config_to_yaml, flatten_config


@click.group("config")
def group() -> None:
    """Show, validate and list configuration profiles (configs/*.yaml).

    Precedence: dataclass defaults < profile YAML < --set overrides.
    """


@group.command("show")
@config_options
@click.option("--flat", is_flag=True, help="Print dot-keys as logged to MLflow instead of YAML.")
def show(profile: str, overrides: tuple[str, ...], flat: bool) -> None:
    """Print the resolved configuration of a profile with overrides applied."""
    cfg = resolve_config(profile, overrides)
    if flat:
        for key, value in flatten_config(cfg).items():
            click.echo(f"{key}={value}")
    else:
        click.echo(config_to_yaml(cfg), nl=False)


@group.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Validate YAML config files (default: every profile in configs/). Exits 2 on the first invalid file."""
    targets = list(paths) or sorted(config_dir().glob("*.yaml"))
    for path in targets:
        resolve_config(str(path), ())
        click.echo(f"ok  {path}")


@group.command("list")
def list_profiles() -> None:
    """List the available profiles."""
    for name in available_profiles():
        click.echo(name)
