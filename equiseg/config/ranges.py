"""Range and meaning checks of config values, applied by :func:`~equiseg.config.load_config` (docs/training.md).

Types are checked while the config is built (:mod:`equiseg.config.coerce`); this module checks that the values
make sense (``train.epochs >= 1``, fractions in [0, 1], ...), so a bad ``--set`` fails at once with one line that
names the key, the value and the valid range instead of a ``ZeroDivisionError`` or a silent, empty run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from equiseg.config.coerce import ConfigError

__all__ = ["RULES", "check_ranges"]

_Rule = tuple[str, Callable[[Any], bool], str]


def _at_least(low: float) -> Callable[[Any], bool]:
    return lambda v: math.isfinite(v) and v >= low


def _above(low: float) -> Callable[[Any], bool]:
    return lambda v: math.isfinite(v) and v > low


def _within(low: float, high: float, *, open_high: bool = False, open_low: bool = False) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        return math.isfinite(v) and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)

    return check


#: ``(dotted key, predicate, what a valid value is)``.
RULES: tuple[_Rule, ...] = (
    ("data.num_classes", _at_least(2), "an integer >= 2"),
    ("data.image_size", _at_least(8), "an integer >= 8 (pixels)"),
    ("data.samples", _at_least(1), "an integer >= 1"),
    ("data.val_fraction", _within(0, 1), "a fraction in [0, 1]"),
    ("data.test_fraction", _within(0, 1), "a fraction in [0, 1]"),
    ("data.quarantine_max_fraction", _within(0, 1), "a fraction in [0, 1]"),
    ("data.num_workers", _at_least(0), "an integer >= 0"),
    ("data.drift_threshold", _at_least(0), "a number >= 0"),
    ("model.drop_path_rate", _within(0, 1, open_high=True), "a rate in [0, 1)"),
    ("model.sgm_weight", _at_least(0), "a number >= 0"),
    ("data.dominance", _within(0, 1), "a fraction in [0, 1] (0: balanced world)"),
    ("train.epochs", _at_least(1), "an integer >= 1"),
    ("train.batch_size", _at_least(1), "an integer >= 1"),
    ("train.lr", _above(0), "a number > 0"),
    ("train.weight_decay", _at_least(0), "a number >= 0"),
    ("train.warmup_epochs", _at_least(0), "a number >= 0"),
    ("train.warmup_ratio", _within(0, 1), "a fraction in [0, 1]"),
    ("train.poly_power", _at_least(0), "a number >= 0"),
    ("train.ohem_thresh", _within(0, 1), "a fraction in [0, 1]"),
    ("train.modality_dropout", _within(0, 1, open_high=True), "a probability in [0, 1)"),
    ("train.grad_clip", _at_least(0), "a number >= 0 (0 disables clipping)"),
    ("train.checkpoint_every_steps", _at_least(0), "an integer >= 0 (0: epoch ends only)"),
    ("train.eval_robustness_every", _at_least(1), "an integer >= 1"),
    ("train.early_stop_patience", _at_least(0), "an integer >= 0 (0: no early stopping)"),
    ("tune.trials", _at_least(1), "an integer >= 1"),
    ("tune.workers", _at_least(1), "an integer >= 1"),
    ("tune.epochs_per_trial", _at_least(1), "an integer >= 1"),
    ("robustness.batch_size", _at_least(1), "an integer >= 1"),
    ("robustness.bootstrap_samples", _at_least(0), "an integer >= 0"),
    ("robustness.ci_level", _within(0, 1, open_low=True, open_high=True), "a level in (0, 1)"),
    ("robustness.examples", _at_least(0), "an integer >= 0"),
    ("gate.min_balance_ratio", _within(0, 1), "a ratio in [0, 1]"),
    ("gate.max_abs_drop", _at_least(0), "mIoU points >= 0"),
    ("gate.max_rel_drop", _within(0, 1), "a fraction in [0, 1]"),
    ("gate.slice_max_abs_drop", _at_least(0), "mIoU points >= 0"),
    ("gate.noninferiority_margin", _at_least(0), "mIoU points >= 0"),
    ("gate.bootstrap_samples", _at_least(1), "an integer >= 1"),
    ("gate.ci_level", _within(0, 1, open_low=True, open_high=True), "a level in (0, 1)"),
    ("gate.latency_budget_ms", _above(0), "milliseconds > 0"),
    ("gate.serving_timeout_s", _above(0), "seconds > 0"),
    ("pipeline.gpu_count", _at_least(0), "an integer >= 0"),
    ("tracking.retries", _at_least(0), "an integer >= 0"),
    ("tracking.backoff_s", _at_least(0), "seconds >= 0"),
)


def check_ranges(cfg: Any) -> None:
    """Raise :class:`ConfigError` for the first value out of its range (one line: key, value, valid range).

    Also checks meanings across keys: ``data.val_fraction + data.test_fraction < 1`` (something must be left to
    train on) and a non-empty ``data.modalities`` without repeats.
    """
    for key, valid, expected in RULES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if isinstance(value, bool) or not valid(value):
            raise ConfigError(f"{key}={value!r} is out of range: expected {expected}; fix it with --set {key}=...")
    data = cfg.data
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {data.val_fraction + data.test_fraction:g} leaves no training "
            "samples; keep their sum below 1"
        )
    if not data.modalities or len(set(data.modalities)) != len(data.modalities):
        raise ConfigError(f"data.modalities={list(data.modalities)} must name at least one modality, each once")
