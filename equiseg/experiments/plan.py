"""What the claim experiment runs: the checked ``experiment:`` section, one config per model x seed, and the hashes
that say whether a finished run still matches its config (docs/results.md, "Method").

Every model is trained with the same ``data:`` and ``train:`` sections; a run ("cell") differs only in its model
name, its training seed and the missing-modality modes resolved for that model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from equiseg.config import ConfigError, EquisegConfig, config_to_dict, stable_hash
from equiseg.models import list_models, supports_missing_modalities

__all__ = ["cell_config", "cell_name", "eval_hash", "train_hash", "validate_experiment"]


def validate_experiment(cfg: EquisegConfig) -> None:
    """Check the ``experiment:`` section before hours of training start.

    Raises:
        ConfigError: unknown model names, a candidate / ablation / margin model not in ``models``, no seeds,
            duplicated entries, or a robustness split the data does not hold.
    """
    ec = cfg.experiment
    known = set(list_models())
    unknown = [m for m in ec.models if m not in known]
    if unknown:
        raise ConfigError(f"experiment.models: unknown model(s) {unknown}; `equiseg model list` shows the valid names")
    if len(set(ec.models)) != len(ec.models) or len(set(ec.seeds)) != len(ec.seeds):
        raise ConfigError("experiment.models and experiment.seeds must not repeat entries")
    if not ec.seeds:
        raise ConfigError("experiment.seeds is empty; give at least one seed, e.g. [0, 1, 2]")
    if ec.candidate not in ec.models:
        raise ConfigError(f"experiment.candidate {ec.candidate!r} is not one of experiment.models {list(ec.models)}")
    if ec.ablation and ec.ablation not in ec.models:
        raise ConfigError(f"experiment.ablation {ec.ablation!r} is not one of experiment.models; add it or set ''")
    stray = [m for m in ec.emm_margins if m not in ec.models]
    if stray:
        raise ConfigError(f"experiment.emm_margins names model(s) {stray} that are not in experiment.models")
    if cfg.robustness.split == "test" and cfg.data.test_fraction <= 0:
        raise ConfigError("robustness.split is 'test' but data.test_fraction is 0; set data.test_fraction, e.g. 0.2")
    if not 0.5 < ec.ci_level < 1.0:
        raise ConfigError(f"experiment.ci_level must be in (0.5, 1), got {ec.ci_level}")


def cell_name(model: str, seed: int) -> str:
    """The folder name of one run under ``<experiment.output_dir>/cells``."""
    return f"{model}-seed{seed}"


def cell_config(cfg: EquisegConfig, model: str, seed: int) -> EquisegConfig:
    """The config of one run: the shared config with its model name and training seed, and the ``auto``
    missing-modality modes (``train.modality_dropout_mode``, ``robustness.missing``) resolved for that model, so a
    run's hashes say what actually happened."""
    out_dir = Path(cfg.experiment.output_dir) / "cells" / cell_name(model, seed)
    natural = "drop" if supports_missing_modalities(model) else "zero"
    overrides: dict[str, Any] = {"model.name": model, "train.seed": seed, "train.output_dir": str(out_dir / "train")}
    if cfg.train.modality_dropout_mode == "auto":
        overrides["train.modality_dropout_mode"] = natural
    if cfg.robustness.missing == "auto":
        overrides["robustness.missing"] = natural
    return cfg.replace(**overrides)


def train_hash(cfg: EquisegConfig) -> str:
    """Hash of what decides a run's weights: ``data:``, ``model:`` and ``train:`` (minus paths and worker counts)."""
    raw = config_to_dict(cfg)
    data = {k: v for k, v in raw["data"].items() if k not in ("root", "num_workers", "dvc_remote")}
    for key, default in (("dominant_modality", ""), ("dominance", 0.0), ("conditions_split", "all")):
        if data.get(key) == default:  # options added later: at their defaults, older runs keep their hashes
            data.pop(key, None)
    train = {k: v for k, v in raw["train"].items() if k not in ("output_dir", "checkpoint_every_steps")}
    # val_suite decides only which extra curves are logged: emm and quick give the same objective, so the same
    # weights are kept (tests/training/test_validation_suite.py)
    train.pop("val_suite", None)
    if train.get("modality_dropout_mode") == "zero":  # the behaviour before the option existed: old runs still match
        del train["modality_dropout_mode"]
    if not train.get("early_stop_patience"):  # likewise: no early stopping is what every older run did
        train.pop("early_stop_patience", None)
    return stable_hash({"data": data, "model": raw["model"], "train": train})


def eval_hash(cfg: EquisegConfig) -> str:
    """Hash of what decides a run's scores given its weights: ``robustness:`` minus batching and report options."""
    raw = config_to_dict(cfg.robustness)
    return stable_hash({k: v for k, v in raw.items() if k not in ("batch_size", "cache", "examples")})
