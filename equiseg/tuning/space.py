"""The tuning search space and its YAML overlays (docs/training.md).

``tune.search_space`` maps dotted config keys to ``{type: float|int|categorical, low, high, log, step, choices}``;
a trial's parameters are applied with ``cfg.replace(**params)``, and the best are written as a YAML overlay
(``best.yaml``) that ``equiseg train --overlay best.yaml`` applies on top of a profile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml

from equiseg.config import ConfigError, EquisegConfig

__all__ = ["load_overlay", "overlay_overrides", "suggest_params", "validate_search_space", "write_overlay"]


def suggest_params(
    trial: optuna.Trial | optuna.trial.FixedTrial, search_space: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Draw one value per dotted key of ``search_space`` from ``trial``.

    Raises:
        ConfigError: an entry lacks ``type`` or its bounds/choices.
    """
    params: dict[str, Any] = {}
    for key, spec in search_space.items():
        kind = spec.get("type")
        try:
            if kind == "float":
                params[key] = trial.suggest_float(
                    key,
                    float(spec["low"]),
                    float(spec["high"]),
                    log=bool(spec.get("log", False)),
                    step=spec.get("step"),
                )
            elif kind == "int":
                params[key] = trial.suggest_int(
                    key,
                    int(spec["low"]),
                    int(spec["high"]),
                    log=bool(spec.get("log", False)),
                    step=int(spec.get("step", 1)),
                )
            elif kind == "categorical":
                params[key] = trial.suggest_categorical(key, list(spec["choices"]))
            else:
                raise ConfigError(
                    f"tune.search_space.{key}: type must be float, int or categorical, got {kind!r}, e.g. "
                    "{type: float, low: 1e-4, high: 3e-3, log: true}"
                )
        except KeyError as exc:
            raise ConfigError(
                f"tune.search_space.{key}: missing {exc.args[0]!r} (float/int need low and high, categorical needs "
                "choices)"
            ) from None
    return params


def validate_search_space(cfg: EquisegConfig) -> None:
    """Check that every search-space key is a config key accepting its values (fails before any trial runs).

    Raises:
        ConfigError: unknown dotted key, bad spec, or values of the wrong type (the message lists valid keys).
    """
    if not cfg.tune.search_space:
        raise ConfigError("tune.search_space is empty; add e.g. train.lr: {type: float, low: 1e-4, high: 3e-3}")
    for key, spec in cfg.tune.search_space.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"tune.search_space.{key} must be a mapping such as {{type: float, low: 0, high: 1}}")
        if key.startswith("tune.") or "." not in key:
            raise ConfigError(f"tune.search_space key {key!r} must be a dotted key of another section, e.g. train.lr")
        probe = optuna.trial.FixedTrial({key: _first_value(spec)})
        value = suggest_params(probe, {key: spec})[key]
        cfg.replace(**{key: value})


def _first_value(spec: Mapping[str, Any]) -> Any:
    if spec.get("type") == "categorical":
        choices = list(spec.get("choices") or [])
        if not choices:
            raise ConfigError("categorical search-space entries need a non-empty choices list")
        return choices[0]
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"search-space entry {dict(spec)} needs low and high")
    return int(spec["low"]) if spec.get("type") == "int" else float(spec["low"])


def write_overlay(params: Mapping[str, Any], path: Path, *, comment: str = "") -> Path:
    """Write dotted ``params`` as a nested YAML overlay (``{train: {lr: ...}}``); returns the path."""
    nested: dict[str, Any] = {}
    for key, value in params.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    header = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(nested, sort_keys=True))
    return path


def overlay_overrides(overlay: Mapping[str, Any], prefix: str = "") -> list[str]:
    """A nested overlay mapping as ``key=value`` override strings (values JSON-encoded, which YAML reads back)."""
    items: list[str] = []
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.extend(overlay_overrides(value, f"{dotted}."))
        else:
            items.append(f"{dotted}={json.dumps(value)}")
    return items


def load_overlay(path: Path) -> list[str]:
    """Read a YAML overlay (e.g. ``best.yaml`` from :func:`run_study`) as override strings for ``load_config``.

    Raises:
        ConfigError: missing file or not a mapping.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"overlay {source} does not exist; `equiseg tune` writes it as <out>/best.yaml")
    raw = yaml.safe_load(source.read_text()) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"overlay {source} must hold a mapping of sections, e.g. train: {{lr: 0.001}}")
    return overlay_overrides(raw)
