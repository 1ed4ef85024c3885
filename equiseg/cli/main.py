"""Root ``equiseg`` group.

Command modules are imported only when their command runs (click's lazy-loading pattern), so ``equiseg --help``
and ``equiseg model list`` do not pay for mlflow, optuna or great-expectations, and a command whose optional
dependency is missing says which extra to install instead of breaking every other command.
"""

from __future__ import annotations

import importlib
import logging
import os
from importlib.metadata import entry_points
from typing import Any

import click

from equiseg import __version__
from equiseg.process import skip_final_collection

#: name -> (module, attribute holding the click command, one-line help shown by ``equiseg --help``).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "config": ("equiseg.cli.config_cmd", "group", "Show, list and validate configuration profiles."),
    "model": ("equiseg.cli.model_cmd", "group", "List the registered models; summarise one (params, GFLOPs)."),
    "data": ("equiseg.cli.data_cmd", "group", "Synthesise, ingest, validate and version datasets."),
    "evaluate": ("equiseg.cli.evaluate_cmd", "command", "Score a model on the robustness suite; write a report."),
    "predict": ("equiseg.cli.predict_cmd", "command", "Masks and colour overlays from a stored model (the champion)."),
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


#: Default bound, in seconds, of one call to a tracking server (``--tracking-timeout``, ``$EQUISEG_TRACKING_TIMEOUT``).
TRACKING_TIMEOUT_S = 30.0
#: Words in an error's text that mean "the server did not answer", and the fix to print with it.
_UNREACHABLE = ("API request to", "Max retries exceeded", "timed out", "Connection refused", "ConnectTimeout")
_HINTS: dict[str, str] = {
    "RESOURCE_DOES_NOT_EXIST": "`equiseg registry list` shows the versions and aliases that exist",
    "unreachable": "check that the tracking server runs and that --tracking-uri / tracking.uri point at it "
    "(each call gives up after --tracking-timeout seconds)",
}


def describe_error(exc: BaseException) -> str:
    """One line for an unexpected error: what happened and, where known, what to do about it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    code = str(getattr(exc, "error_code", ""))
    if code and "not found" in text:  # MLflow reports a missing alias as INVALID_PARAMETER_VALUE
        code = "RESOURCE_DOES_NOT_EXIST"
    if code in _HINTS:
        text += f"; {_HINTS[code]}"
    elif isinstance(exc, ConnectionError | TimeoutError) or any(w in str(exc) for w in _UNREACHABLE):
        text += f"; {_HINTS['unreachable']}"
    return f"{text} ({type(exc).__name__}; -v shows the traceback)"


def bound_tracking_calls(timeout_s: float, *, explicit: bool) -> None:
    """Bound every MLflow HTTP call of this process to ``timeout_s`` seconds and one attempt.

    MLflow's defaults (120 s a request, 7 retries with backoff) keep a command waiting minutes on a dead server;
    equiseg's own retry loop (tracking.retries) decides about retrying. Unless the timeout was given ``explicit``-ly,
    MLflow variables the user exported are kept.
    """
    value = str(max(1, round(timeout_s)))
    if explicit:
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = value
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", value)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


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

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; an unexpected error becomes one line (its traceback only with ``-v``)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except ModuleNotFoundError as exc:
            message = missing_extra_message(ctx.invoked_subcommand or "", exc)
            if message is None and ctx.params.get("verbose"):
                raise
            raise click.ClickException(message or describe_error(exc)) from exc
        except Exception as exc:
            if ctx.params.get("verbose"):
                raise
            raise click.ClickException(describe_error(exc)) from exc

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
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug) and tracebacks of errors.")
@click.option(
    "--tracking-timeout",
    type=click.FloatRange(min=1),
    default=TRACKING_TIMEOUT_S,
    show_default=True,
    envvar="EQUISEG_TRACKING_TIMEOUT",
    help="Seconds one call to a tracking server may take before the command gives up with a message.",
)
def cli(verbose: int, tracking_timeout: float) -> None:
    """equiseg: robust multimodal semantic segmentation and its robustness-gated retraining pipeline.

    Typical use: `equiseg pipeline run --profile smoke` runs the whole pipeline locally; every step is also a
    command of its own. Configuration comes from configs/<profile>.yaml plus --set overrides.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    source = click.get_current_context().get_parameter_source("tracking_timeout")
    bound_tracking_calls(tracking_timeout, explicit=source is not click.core.ParameterSource.DEFAULT)


def main() -> None:
    """Console-script entry point."""
    skip_final_collection()
    cli(prog_name="equiseg")
