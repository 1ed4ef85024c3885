"""Typed, frozen configuration for every part of equiseg, loaded from YAML profiles.

One :class:`EquisegConfig` holds a section per part of the system (data, model, train, tune, robustness, gate,
pipeline, tracking). Profiles live in ``configs/<name>.yaml`` and override the dataclass defaults; command-line
overrides (``--set train.lr=3e-4``) override the profile. Unknown keys and wrong types are rejected with a message
that lists the valid keys and the expected type, so a typo never silently falls back to a default.

Precedence: code defaults < profile YAML < ``--set`` overrides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

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
    "flatten_config",
    "load_config",
    "parse_override",
    "save_config",
    "stable_hash",
]


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message says which and what is accepted."""


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is read (see docs/data.md)."""

    root: str = "data"  # data root, relative to the working directory; tracked by DVC as data.dvc
    source: Literal["synthetic", "mfnet", "mfnet_cmx", "pst900", "nyuv2", "deliver", "muses"] = "synthetic"
    modalities: tuple[str, ...] = ("rgb", "depth", "thermal")
    num_classes: int = 8  # classes of the synthetic world; real datasets set their own
    ignore_index: int = 255
    image_size: int = 64  # side of the square synthetic images and of training crops
    samples: int = 64  # synthetic samples to generate
    val_fraction: float = 0.25
    test_fraction: float = 0.0
    conditions: bool = True  # synthetic: add condition tags (night, fog) to some samples
    seed: int = 0
    num_workers: int = 0  # DataLoader / validator worker processes
    quarantine_max_fraction: float = 0.05  # validation blocks the run above this share of quarantined samples
    drift_threshold: float = 0.25  # validation blocks the run when a statistic drifts further than this
    dvc_remote: str = ".dvc-remote"  # local folder by default; an s3:// URL on a cluster


@dataclass(frozen=True)
class ModelConfig:
    """Which registered model to build (see docs/model.md and ``equiseg model list``).

    The three options are passed to ``equiseg.models.create_model`` as keyword overrides; every model accepts them
    and ignores those it has no knob for (docs/model.md, "Registry").
    """

    name: str = "equiseg_tiny"  # <family>_<variant>, e.g. equiseg_b0, cmnext_like_tiny
    share_encoder_weights: bool = False  # equiseg*: one set of MiT stages for all modality branches vs one per modality
    sgm_weight: float = 1.0  # equiseg: multiplier of the Self-guided Module's auxiliary losses (0 turns them off)
    drop_path_rate: float = 0.0  # stochastic depth at the last encoder block, linear over blocks (all models)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and the training loop (see docs/training.md)."""

    epochs: int = 2
    batch_size: int = 4
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5  # linear warm-up, then poly decay
    warmup_ratio: float = 0.1  # LR at the start of warm-up, as a fraction of lr
    poly_power: float = 0.9
    loss: Literal["ce", "ohem"] = "ce"
    ohem_thresh: float = 0.7
    modality_dropout: float = 0.2  # probability of dropping each modality (never all) per sample
    # zero: zero-fill dropped modalities per sample (every model); drop: remove them from the batch (one subset per
    # step; models that fuse subsets); auto: drop for models that support subsets, zero for the others, which is
    # what robustness.missing=auto scores them with (docs/results.md: a mismatch scores inputs never trained on)
    modality_dropout_mode: Literal["zero", "drop", "auto"] = "auto"
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA; always fp32 on CPU
    deterministic: bool = True  # deterministic algorithms on CPU
    checkpoint_every_steps: int = 0  # mid-epoch checkpoints; 0 = only at epoch ends
    eval_robustness_every: int = 1  # quick suite every N epochs (and the last); best.pt maximises (clean+EMM)/2
    output_dir: str = "runs/train"


@dataclass(frozen=True)
class TuneConfig:
    """Optuna hyper-parameter search (see docs/training.md)."""

    trials: int = 4
    workers: int = 1
    storage: str = ""  # empty: sqlite file next to the outputs; postgresql+psycopg2://... for parallel workers
    study_name: str = "equiseg"
    sampler_seed: int = 0
    pruner: Literal["median", "hyperband", "none"] = "median"
    epochs_per_trial: int = 1  # each trial returns its best (clean_miou + emm_avg) / 2, reported every epoch
    # Search space: dotted config key -> {type: float|int|categorical, low, high, log, choices}
    search_space: dict[str, Any] = field(
        default_factory=lambda: {
            "train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
            "train.modality_dropout": {"type": "float", "low": 0.0, "high": 0.5},
        }
    )


@dataclass(frozen=True)
class RobustnessConfig:
    """Robustness evaluation suites (see docs/robustness.md)."""

    suite: Literal["clean", "quick", "full"] = "quick"
    seed: int = 0
    batch_size: int = 8
    severities: tuple[int, ...] = (1, 3, 5)  # severities used by the quick suite's corruption matrix
    bootstrap_samples: int = 1000
    ci_level: float = 0.95
    miou_absent_as_zero: bool = True  # DeLiVER convention: a class absent from GT and prediction counts as IoU 0
    missing: Literal["auto", "zero", "drop"] = "auto"  # EMM: auto = drop if the model supports subsets, else zero
    split: str = "val"  # manifest split that `equiseg evaluate` scores
    examples: int = 4  # samples in the report's prediction grid (one per condition tag first); 0 = none
    cache: Literal["device", "cpu", "none"] = "device"  # where clean eval batches wait between slices; none = re-read


@dataclass(frozen=True)
class GateConfig:
    """Robustness promotion gate policy (see docs/gate.md for every rule and its formula)."""

    mode: Literal["enabled", "dry_run", "manual"] = "enabled"  # dry_run: decide and record only; manual: challenger
    model_name: str = "equiseg"  # registered model name in the MLflow model registry
    min_clean_miou: float = 0.0  # value floors, in mIoU points (0-100); the only rules on a first run
    min_emm_avg: float = 0.0
    min_worst_slice: float = 0.0
    min_balance_ratio: float = 0.0  # min/max of single-modality mIoUs (0-1)
    max_abs_drop: float = 1.0  # change thresholds against the champion, mIoU points
    max_rel_drop: float = 0.05  # ... and as a fraction of the champion's value
    slice_max_abs_drop: float = 3.0  # per-slice change threshold, mIoU points
    noninferiority_margin: float = 1.0  # paired-bootstrap lower bound of (candidate - champion) must clear -margin
    require_improvement: bool = True  # the lower bound over all slices must also clear min_improvement
    min_improvement: float = 0.0  # mIoU points; blocks candidates that only look better by chance
    bootstrap_samples: int = 1000
    ci_level: float = 0.95
    seed: int = 0  # bootstrap resampling seed
    serving_check: bool = True  # load the candidate in a fresh process and run every modality subset
    latency_budget_ms: float = 5000.0  # serving check: per-batch latency budget
    serving_timeout_s: float = 300.0
    lock_uri: str = ""  # promotion lock; empty: derived from the tracking URI (sqlite file lock, postgres advisory)


@dataclass(frozen=True)
class PipelineConfig:
    """The retraining pipeline: local run and cluster compilation (see docs/pipeline.md)."""

    name: str = "equiseg-retrain"
    output_dir: str = "runs"
    image: str = "ghcr.io/equiseg/equiseg:0.1.0"
    gpu_image: str = "ghcr.io/equiseg/equiseg-gpu:0.1.0"
    enable_caching: bool = False
    gpu_accelerator: str = "nvidia.com/gpu"
    gpu_count: int = 1
    gpu_node_selector: dict[str, str] = field(default_factory=lambda: {"equiseg.io/pool": "gpu"})
    gpu_toleration_key: str = "nvidia.com/gpu"
    data_pvc: str = "equiseg-data-cache"
    mlflow_secret: str = "equiseg-mlflow"
    s3_secret: str = "equiseg-s3"
    postgres_secret: str = "equiseg-postgres"  # key optuna_storage_url -> $EQUISEG_OPTUNA_STORAGE
    cpu_request: str = "2"
    memory_request: str = "8Gi"


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking (see docs/training.md)."""

    uri: str = "sqlite:///runs/mlflow.db"  # relative sqlite paths are resolved against the working directory
    artifact_location: str = "runs/mlartifacts"
    experiment: str = "equiseg-retrain"
    retries: int = 3
    backoff_s: float = 1.0
    log_system_metrics: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    """The claim experiment (issue 9, ``equiseg experiment claim``; docs/results.md): every model trained and
    scored alike over several seeds, EQUISeg compared against each baseline with hierarchical bootstrap CIs."""

    models: tuple[str, ...] = (
        "equiseg_tiny",
        "equiseg_nosgm_tiny",
        "cmnext_like_tiny",
        "early_fusion_tiny",
        "mean_fusion_tiny",
        "segformer_rgb_tiny",
    )
    seeds: tuple[int, ...] = (0, 1, 2)  # train.seed per run: initialisation, batch order, modality dropout
    candidate: str = "equiseg_tiny"  # the model the claim is about; must be in models
    ablation: str = "equiseg_nosgm_tiny"  # the candidate without its Self-guided Module ("" = no ablation row)
    clean_tolerance: float = 1.0  # target: candidate clean mIoU >= best baseline's - this (points)
    emm_margins: dict[str, float] = field(  # target: candidate EMM avg - baseline's EMM avg >= margin (points)
        default_factory=lambda: {"cmnext_like_tiny": 5.0, "early_fusion_tiny": 3.0}
    )
    bootstrap_samples: int = 2000  # replicates of the two-level (seeds, then images) bootstrap
    ci_level: float = 0.95
    bootstrap_seed: int = 0
    output_dir: str = "runs/claim"  # data, one folder per model x seed, results.json, figures
    results_doc: str = "docs/results.md"  # Markdown report written at the end (figures in <stem>/ beside it)


@dataclass(frozen=True)
class EquisegConfig:
    """The whole resolved configuration of one run."""

    profile: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def replace(self, **overrides: Any) -> EquisegConfig:
        """Return a copy with dotted-key overrides applied, e.g. ``cfg.replace(**{"train.lr": 1e-3})``."""
        raw = config_to_dict(self)
        for key, value in overrides.items():
            _set_dotted(raw, key, value)
        return _build(EquisegConfig, raw, "")


# --------------------------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------------------------


def config_dir() -> Path:
    """Folder holding the YAML profiles: ``$EQUISEG_CONFIG_DIR``, else ``configs/`` of the source checkout."""
    env = os.environ.get("EQUISEG_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "configs"


def available_profiles() -> list[str]:
    """Names of the profiles in :func:`config_dir`."""
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def load_config(profile: str | os.PathLike[str] = "smoke", overrides: Iterable[str] = ()) -> EquisegConfig:
    """Load a profile (a name in ``configs/`` or a path to a YAML file) and apply ``key=value`` overrides.

    Raises:
        ConfigError: unknown profile, unknown key or a value of the wrong type; the message lists what is valid.
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
        _set_dotted(raw, key, value)
    return _build(EquisegConfig, raw, "")


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``section.key=value`` and parse the value as YAML (``3e-4`` -> float, ``[a, b]`` -> list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.lr=3e-4")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key; use section.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only where lossless (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        (item_tp, *_rest) = get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _key_tp, val_tp = get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected bool (true/false), got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected str, got {value!r} (quote it in YAML)")
        return value
    raise ConfigError(f"{where}: unsupported annotation {tp!r}")  # pragma: no cover - programming error


def _build(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        valid = ", ".join(f"{prefix}{name} ({_type_name(hints[name])})" for name in fields)
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)} at {where}; valid keys: {valid}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name}: expected a section (mapping), got {value!r}")
            kwargs[name] = _build(typing.cast(type, tp), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------------------------------------


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML or JSON."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    result: dict[str, Any] = convert(cfg)
    return result


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
