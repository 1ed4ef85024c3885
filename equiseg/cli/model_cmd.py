"""``equiseg model``: list the registered models and summarise one (params, GFLOPs, per-stage shapes)."""

from __future__ import annotations

import json

import click

from equiseg import models
from equiseg.cli.common import config_options, resolve_config
from equiseg.models.catalog import FAMILY_INFO, VARIANTS, list_models

__all__ = ["group"]


@click.group("model")
def group() -> None:
    """EQUISeg and its baselines: list the registry, inspect a model's size and cost (docs/model.md)."""


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of names instead of a table.")
def list_command(as_json: bool) -> None:
    """List every registered model name (<family>_<variant>) with what the family is."""
    if as_json:
        click.echo(json.dumps(list_models()))
        return
    click.echo(f"variants: {', '.join(VARIANTS)} (tiny = CPU tests; b0/b1/b2 = MiT-B0/B1/B2 widths)\n")
    for family, spec in FAMILY_INFO.items():
        names = ", ".join(f"{family}_{variant}" for variant in VARIANTS)
        click.echo(f"{family:<15} {spec.description}\n{'':<15} {names}")


@group.command("summary")
@click.argument("name", required=False)
@click.option(
    "--modalities",
    "-m",
    default=None,
    help="Comma-separated modalities, e.g. rgb,depth (default: data.modalities of the profile).",
)
@click.option("--size", default=512, show_default=True, type=click.IntRange(min=32), help="Square input side in px.")
@click.option("--num-classes", type=click.IntRange(min=1), default=None, help="Classes (default: data.num_classes).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@config_options
def summary_command(
    name: str | None,
    modalities: str | None,
    size: int,
    num_classes: int | None,
    as_json: bool,
    profile: str,
    overrides: tuple[str, ...],
) -> None:
    """Parameters, GFLOPs (torch.utils.flop_counter, batch 1) and per-stage feature shapes of NAME.

    NAME defaults to model.name of the profile; model.* options of the profile (share_encoder_weights, sgm_weight,
    drop_path_rate) apply. Example: equiseg model summary equiseg_b0 --modalities rgb,depth --size 512
    """

    cfg = resolve_config(profile, overrides)
    model_name = name or cfg.model.name
    mods = tuple(m.strip() for m in modalities.split(",") if m.strip()) if modalities else cfg.data.modalities
    try:
        model = models.create_model(
            model_name,
            num_classes=num_classes or cfg.data.num_classes,
            modalities=mods,
            share_encoder_weights=cfg.model.share_encoder_weights,
            sgm_weight=cfg.model.sgm_weight,
            drop_path_rate=cfg.model.drop_path_rate,
        )
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from exc
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    summary = models.summarize_model(model, size)
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.to_text())
