"""The configuration's sections: one frozen dataclass per part of the system (docs/design.md).

Defaults here are the lowest level of precedence: code defaults < profile YAML < ``--set`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from equiseg.config.coerce import build, config_to_dict, set_dotted


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
    conditions_split: Literal["all", "test"] = "all"  # synthetic: "test" confines night/fog to the test split
    # synthetic dominance dial (docs/data.md): the modality that alone carries the classes it reveals, and how far
    # (0 = the balanced world, 1 = the others show none of those classes)
    dominant_modality: str = ""
    dominance: float = 0.0
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
    compile: bool = False  # torch.compile the model forward + losses (first steps compile; docs/training.md, Speed)
    deterministic: bool = True  # deterministic algorithms on CPU
    checkpoint_every_steps: int = 0  # mid-epoch checkpoints; 0 = only at epoch ends
    eval_robustness_every: int = 1  # val_suite every N epochs (and the last); best.pt maximises (clean+EMM)/2
    # the robustness suite scored on val for that: quick also logs RMM, NM and corruption curves per epoch; emm
    # scores only what the objective uses (clean + EMM), several times cheaper, and selects the same checkpoint
    val_suite: Literal["emm", "quick"] = "quick"
    # stop once this many epochs passed since the best validation objective (a plateau); 0 = run every epoch
    early_stop_patience: int = 0
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

    suite: Literal["clean", "emm", "quick", "full"] = "quick"
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
    beat_constant: bool = True  # clean and every kept-modality subset must beat any constant (majority) predictor
    min_keep_without: float = 0.5  # mIoU with any one modality missing >= this fraction of clean mIoU (0 = off)
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
    # Steps whose KFP cache may be hit: only those whose outputs depend on nothing but their inputs. Empty by default:
    # the pixel files live on data.root, outside the artifact store, so a cached data step can point at files
    # another run replaced (docs/pipeline.md, "Caching").
    cached_steps: tuple[str, ...] = ()
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
    cpu_limit: str = "4"
    memory_limit: str = "16Gi"
    # Retries of the steps that call services (MLflow, Optuna storage, DVC remote, registry), cluster target only:
    # the k-th retry waits retry_backoff * retry_backoff_factor**k (docs/pipeline.md, "Retries").
    retries: int = 2
    retry_backoff: str = "30s"
    retry_backoff_factor: float = 2.0


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
    """The claim experiment (``equiseg experiment claim``; docs/results.md): every model trained and scored alike
    over several seeds, EQUISeg compared against each baseline with hierarchical bootstrap CIs."""

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
    # judge those targets (and clean_tolerance) at the strongest setting of a study; false for an exploratory
    # study, e.g. the controls (docs/results.md, "Study"), whose section then has no targets table
    preregistered: bool = True
    bootstrap_samples: int = 2000  # replicates of the two-level (seeds, then images) bootstrap
    ci_level: float = 0.95
    bootstrap_seed: int = 0
    output_dir: str = "runs/claim"  # data, one folder per model x seed, results.json, figures
    results_doc: str = "docs/results.md"  # Markdown report written at the end (figures in <stem>/ beside it)
    # study (`equiseg experiment study`): data.dominance settings to sweep (empty: data.dominance only), and the
    # folder of the per-run summary JSON files the tables are rebuilt from ("" = <output_dir>/summaries)
    dominance_levels: tuple[float, ...] = ()
    summary_dir: str = ""


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
            set_dotted(raw, key, value)
        return build(EquisegConfig, raw, "")
