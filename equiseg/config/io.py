"""Profiles in and out: load a YAML profile with ``--set`` overrides, save, flatten for MLflow, hash for lineage."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from equiseg.config.coerce import ConfigError, build, config_to_dict, parse_override, set_dotted
from equiseg.config.ranges import check_ranges
from equiseg.config.schema import EquisegConfig


def config_dir() -> Path:
    """Folder holding the YAML profiles: ``$EQUISEG_CONFIG_DIR``, else ``configs/`` of the source checkout."""
    env = os.environ.get("EQUISEG_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs"


def available_profiles() -> list[str]:
    """Names of the profiles in :func:`config_dir`."""
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def load_config(profile: str | os.PathLike[str] = "smoke", overrides: Iterable[str] = ()) -> EquisegConfig:
    """Load a profile (a name in ``configs/`` or a path to a YAML file) and apply ``key=value`` overrides.

    Raises:
        ConfigError: unknown profile, unknown key, a value of the wrong type or out of its range
            (:func:`~equiseg.config.ranges.check_ranges`); the message says what is valid.
    """
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / f"{profile}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown profile {str(profile)!r}; available profiles in {config_dir()}: "
                f"{', '.join(available_profiles()) or '(none)'} (or pass a path to a .yaml file)"
            )
    elif not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data:, model:, ...), got {type(raw).__name__}")
    raw.setdefault("profile", path.stem)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    cfg = build(EquisegConfig, raw, "")
    check_ranges(cfg)
    return cfg


def flatten_config(cfg: Any, sep: str = ".") -> dict[str, str]:
    """Flatten to dot-keys with string values, as MLflow params expect (``{"train.lr": "0.0006", ...}``)."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{sep}{key}" if prefix else str(key))
        elif isinstance(node, list):
            flat[prefix] = ",".join(str(v) for v in node)
        else:
            flat[prefix] = json.dumps(node) if isinstance(node, dict) else str(node)

    walk(config_to_dict(cfg), "")
    return flat


def config_to_yaml(cfg: EquisegConfig) -> str:
    """The resolved configuration as YAML text."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: EquisegConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved configuration as YAML next to an output; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_to_yaml(cfg))
    return out


def config_hash(cfg: EquisegConfig) -> str:
    """Short, stable hash of the resolved configuration (for lineage tags)."""
    return stable_hash(config_to_dict(cfg))


def stable_hash(raw: Any) -> str:
    """Short sha256 of JSON-ready data, independent of key order (configs and parts of them)."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:12]
