"""Root ``equiseg`` group.

Command modules are imported only when their command runs (click's lazy-loading pattern), so ``equiseg --help``
and ``equiseg model list`` do not pay for mlflow, optuna or great-expectations, and a command whose optional
dependency is missing says which extra to install instead of breaking every other command.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

import click

from equiseg import __version__

#: name -> (module, attribute holding the click command, one-line help shown by ``equiseg --help``).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "config": ("equiseg.cli.config_cmd", "group", "Show, list and validate configuration profiles."),
    "model": ("equiseg.cli.model_cmd", "group", "List the registered models; summarise one (params, GFLOPs)."),
    "data": ("equiseg.cli.data_cmd", "group", "Synthesise, ingest, validate and version datasets."),
    "evaluate": ("equiseg.cli.evaluate_cmd", "command", "Score a model on the robustness suite; write a report."),
    "gate": ("equiseg.cli.gate_cmd", "command", "Decide whether a candidate may replace the champion."),
    "registry": ("equiseg.cli.registry_cmd", "group", "Register, promote, approve and roll back model versions."),
    "train": ("equiseg.cli.train_cmd", "command", "Train a model; keep the best checkpoint by robustness."),
    "tune": ("equiseg.cli.tune_cmd", "command", "Search hyperparameters with Optuna (TPE + pruning)."),
    "experiment": ("equiseg.cli.experiment_cmd", "group", "Run the claim experiment: models x seeds, analysed."),
}

#: top-level package of an optional dependency -> the extra that installs it (pyproject.toml).
EXTRAS: dict[str, str] = {
    "mlflow": "mlops",
    "optuna": "mlops",
    "great_expectations": "mlops",
    "dvc": "mlops",
    "psycopg2": "mlops",
    "sqlalchemy": "mlops",
    "pandas": "mlops",
    "kfp": "pipeline",
}


def missing_extra_message(command: str, exc: ModuleNotFoundError) -> str | None:
    """One line naming the extra that provides ``exc.name``; None when the missing module is no optional one."""
    package = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(package)
    if extra is None:
        return None
    return f"equiseg {command} needs {package}, from the [{extra}] extra: pip install 'equiseg[{extra}]'"


def _plugins() -> dict[str, Any]:
    """Commands that packages above the library register under the ``equiseg.cli`` entry-point group."""
    return {entry.name: entry for entry in entry_points(group="equiseg.cli")}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *_plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        try:
            if cmd_name in COMMANDS:
                module, attr, _ = COMMANDS[cmd_name]
                command: click.Command = getattr(importlib.import_module(module), attr)
            elif cmd_name in (plugins := _plugins()):
                command = plugins[cmd_name].load()
            else:
                return None
        except ModuleNotFoundError as exc:
            message = missing_extra_message(cmd_name, exc)
            if message is None:
                raise
            raise click.ClickException(message) from exc
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the static help lines: listing commands imports none of them."""
        rows = []
        for name in self.list_commands(ctx):
            if name in COMMANDS:
                rows.append((name, COMMANDS[name][2]))
                continue
            try:  # a plugin: its own help, loaded (one small module); a broken one must not take --help down
                command = self.get_command(ctx, name)
            except (ImportError, click.ClickException) as exc:
                rows.append((name, f"(not loaded: {exc})"))
                continue
            rows.append((name, command.get_short_help_str(80) if command else ""))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="equiseg")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """equiseg: robust multimodal semantic segmentation and its robustness-gated retraining pipeline.

    Typical use: `equiseg pipeline run --profile smoke` runs the whole pipeline locally; every step is also a
    command of its own. Configuration comes from configs/<profile>.yaml plus --set overrides.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="equiseg")
