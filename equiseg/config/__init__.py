"""Typed, frozen configuration for every part of equiseg, loaded from YAML profiles.

One :class:`EquisegConfig` holds a section per part of the system (data, model, train, tune, robustness, gate,
pipeline, tracking, experiment). Profiles live in ``configs/<name>.yaml`` and override the dataclass defaults;
command-line overrides (``--set train.lr=3e-4``) override the profile. Unknown keys and wrong types are rejected with
a message that lists the valid keys and the expected type, so a typo never silently falls back to a default.

Precedence: code defaults < profile YAML < ``--set`` overrides.

- :mod:`equiseg.config.schema`: the sections (frozen dataclasses) and their defaults.
- :mod:`equiseg.config.coerce`: mapping -> dataclass with type checks, ``key=value`` parsing.
- :mod:`equiseg.config.io`: profiles, saving, flattening for MLflow params, hashing.
"""

from equiseg.config.coerce import ConfigError, config_to_dict, parse_override
from equiseg.config.io import (
    available_profiles,
    config_dir,
    config_hash,
    config_to_yaml,
    flatten_config,
    load_config,
    save_config,
    stable_hash,
)
from equiseg.config.schema import (
    DataConfig,
    EquisegConfig,
    ExperimentConfig,
    GateConfig,
    ModelConfig,
    PipelineConfig,
    RobustnessConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "EquisegConfig",
    "ExperimentConfig",
    "GateConfig",
    "ModelConfig",
    "PipelineConfig",
    "RobustnessConfig",
    "TrackingConfig",
    "TrainConfig",
    "TuneConfig",
    "available_profiles",
    "config_dir",
    "config_hash",
    "config_to_dict",
    "config_to_yaml",
    "flatten_config",
    "load_config",
    "parse_override",
    "save_config",
    "stable_hash",
]
