"""Root ``equiseg`` group. Each capability adds its sub-group module to ``_COMMAND_MODULES`` when it lands."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

import click

from equiseg import __version__

# module path -> attribute holding a click.Command / click.Group. Only built capabilities are listed.
_COMMAND_MODULES: list[tuple[str, str]] = [
    ("equiseg.cli.config_cmd", "group"),
    ("equiseg.cli.model_cmd", "group"),
    ("equiseg.cli.data_cmd", "group"),
    ("equiseg.cli.evaluate_cmd", "command"),
    ("equiseg.cli.gate_cmd", "command"),
    ("equiseg.cli.registry_cmd", "group"),
    ("equiseg.cli.train_cmd", "command"),
    ("equiseg.cli.tune_cmd", "command"),
    ("equiseg.cli.experiment_cmd", "group"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="equiseg")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """equiseg: robust multimodal semantic segmentation and its robustness-gated retraining pipeline.

    Typical use: `equiseg pipeline run --profile smoke` runs the whole pipeline locally; every step is also a
    command of its own. Configuration comes from configs/<profile>.yaml plus --set overrides.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


for _module, _attr in _COMMAND_MODULES:
    cli.add_command(getattr(importlib.import_module(_module), _attr))

# Plugins: packages above the library (the `pipelines/` package's `equiseg pipeline ...` group) register their
# commands under the `equiseg.cli` entry-point group, so the library never imports them.
for _entry in entry_points(group="equiseg.cli"):
    try:
        cli.add_command(_entry.load(), name=_entry.name)
    except ImportError as _exc:  # a broken plugin must not take the whole CLI down; say what is missing
        logging.getLogger(__name__).warning("equiseg CLI plugin %r not loaded: %s", _entry.name, _exc)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="equiseg")
