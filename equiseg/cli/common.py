"""Conventions every ``equiseg`` command shares (docs/operations.md, "Command line").

* ``--profile`` / ``--set`` and :func:`resolve_config`, which also checks the names the config refers to (model,
  modalities, experiment models, degradation severities) so a typo fails at load time, not mid-run.
* ``--out DIR`` is the one output flag (:func:`out_option`; the old ``--report`` stays as a hidden alias),
  ``--progress/--no-progress`` the one progress flag (:data:`progress_option`), ``--json`` the one machine-readable
  switch (:data:`json_option` and :func:`emit`).
* :func:`read_only_tracking_uri`: commands that only read the tracking store never create one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from equiseg.config import ConfigError, EquisegConfig, load_config

F = TypeVar("F", bound=Callable[..., Any])

#: Severities the degradations are defined for (equiseg.robustness.apply_degradation: 1-5; 0 is the identity).
SEVERITIES = range(1, 6)


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


def _unknown(kind: str, names: Any, known: Any) -> str | None:
    bad = [n for n in names if n not in known]
    if not bad:
        return None
    return f"unknown {kind} {', '.join(map(repr, bad))}; valid: {', '.join(map(str, known))}"


def check_names(cfg: EquisegConfig) -> None:
    """Raise :class:`ConfigError` when the config names a model, modality or severity that does not exist."""
    # heavy (torch, via the model registry and modalities): deferred so `equiseg --help`, which loads this module
    # through the pipeline plugin's help line, stays free of torch (tests/code/test_cli_lazy.py)
    from equiseg.modalities import KNOWN_MODALITIES
    from equiseg.models import list_models  # heavy (torch): see above

    models = list_models()
    experiment = cfg.experiment
    problems = [
        _unknown("model.name", [cfg.model.name], models),
        _unknown("modality in data.modalities", cfg.data.modalities, KNOWN_MODALITIES),
        _unknown("model in experiment.models", experiment.models, models),
        _unknown("experiment.candidate", [experiment.candidate], experiment.models),
        _unknown("experiment.ablation", [experiment.ablation] if experiment.ablation else [], experiment.models),
        _unknown("degradation severity in robustness.severities", cfg.robustness.severities, SEVERITIES),
    ]
    space = cfg.tune.search_space.get("model.name", {})
    if isinstance(space, Mapping):
        problems.append(_unknown("model in tune.search_space[model.name]", space.get("choices", []), models))
    found = [p for p in problems if p]
    if found:
        raise ConfigError(f"{cfg.profile}: " + "; ".join(found))


class BadConfig(click.ClickException):
    """An invalid config: one ``Error:`` line with what is valid, exit code 2 like other usage errors."""

    exit_code = 2


def resolve_config(profile: str, overrides: tuple[str, ...]) -> EquisegConfig:
    """Load the config and check its names, or exit with the message (exit code 2, like other usage errors)."""
    try:
        cfg = load_config(profile, overrides)
        check_names(cfg)
    except ConfigError as exc:
        raise BadConfig(str(exc)) from exc
    return cfg


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")

progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show progress on stderr."
)


def emit(as_json: bool, payload: Any, text: str | Callable[[], str]) -> None:
    """Print ``payload`` as JSON under ``--json``, else the human-readable ``text`` (or what it returns)."""
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        click.echo(text() if callable(text) else text, nl=True)


def out_option(help_text: str, *, legacy: tuple[str, ...] = ()) -> Callable[[F], F]:
    """The one output flag, ``--out DIR`` (dest ``out_dir``); old names in ``legacy`` keep working, hidden.

    A required ``--out`` is checked in the command with :func:`require_out`: click checks a required option before
    it sees that a legacy alias gave the value.
    """

    def decorate(func: F) -> F:
        for name in legacy:
            func = click.option(
                name,
                "out_dir",
                hidden=True,
                type=click.Path(file_okay=False, path_type=Path),
                deprecated=f"use --out (same meaning); {name} will be removed",
            )(func)
        return click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help=help_text)(func)

    return decorate


def require_out(out_dir: Path | None) -> Path:
    """``out_dir`` or a usage error saying to pass ``--out``."""
    if out_dir is None:
        raise click.UsageError("Missing option '--out': the folder to write the outputs to, e.g. --out runs/eval")
    return out_dir


def read_only_tracking_uri(uri: str, cwd: Path | None = None) -> str:
    """The tracking URI for a command that only reads: a local sqlite store must already exist (none is created).

    Raises:
        click.ClickException: the sqlite file does not exist, with where it was looked for and what to do.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and uri != prefix + ":memory:":
        rest = uri[len(prefix) :]
        path = Path(rest) if rest.startswith("/") else (cwd or Path.cwd()) / rest
        if not path.is_file():
            raise click.ClickException(
                f"no tracking store at {path} (nothing was tracked from this folder); run the command from the "
                "project folder or pass --tracking-uri / --set tracking.uri=..."
            )
        return f"sqlite:///{path.resolve()}"
    return uri
