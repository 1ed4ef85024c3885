"""Options shared by several commands: ``--profile`` and repeated ``--set key=value``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from equiseg.config import ConfigError, EquisegConfig, load_config

F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F | None = None, *, default_profile: str = "smoke") -> Any:
    """Add ``--profile`` and ``--set`` to a command; the command receives ``profile`` and ``overrides``.

    Use bare (``@config_options``) or with another default profile (``@config_options(default_profile="cluster")``).
    """
    if func is None:
        return lambda f: config_options(f, default_profile=default_profile)
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config value, e.g. --set train.lr=3e-4 (repeatable). Values are parsed as YAML.",
    )(func)
    func = click.option(
        "--profile",
        "-p",
        default=default_profile,
        show_default=True,
        help="Config profile: a name in configs/ (smoke, cpu, gpu, cluster) or a path to a YAML file.",
    )(func)
    return func


def resolve_config(profile: str, overrides: tuple[str, ...]) -> EquisegConfig:
    """Load the config or exit with the validation message (exit code 2, like other usage errors)."""
    try:
        return load_config(profile, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
