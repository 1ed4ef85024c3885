"""The study's plan and file layout: its dominance settings, the config of each setting, the planned runs and
where each run's summary lives (docs/results.md, "Study"; :mod:`equiseg.experiments.study` runs it)."""

from __future__ import annotations

from pathlib import Path

from equiseg.config import ConfigError, EquisegConfig

__all__ = [
    "STUDY_FORMAT",
    "STUDY_METRICS",
    "level_config",
    "planned_runs",
    "study_levels",
    "summary_dir",
    "summary_path",
]

STUDY_FORMAT = "equiseg.study-run/1"
#: The per-run figures every comparison table reports (mIoU points; the balance ratio is 0-1).
STUDY_METRICS: tuple[str, ...] = ("emm_avg", "clean_miou", "balance_ratio")


def study_levels(cfg: EquisegConfig) -> list[float]:
    """The dominance settings of the study: ``experiment.dominance_levels``, else ``data.dominance`` alone."""
    levels = [float(v) for v in cfg.experiment.dominance_levels] or [float(cfg.data.dominance)]
    bad = [v for v in levels if not 0.0 <= v <= 1.0]
    if bad or len(set(levels)) != len(levels):
        raise ConfigError(f"experiment.dominance_levels must be distinct fractions in [0, 1], got {levels}")
    if any(v > 0 for v in levels) and not cfg.data.dominant_modality:
        raise ConfigError("experiment.dominance_levels > 0 need data.dominant_modality (rgb, depth or thermal)")
    return sorted(levels)


def _level_name(level: float) -> str:
    return f"dominance-{level:g}"


def level_config(cfg: EquisegConfig, level: float) -> EquisegConfig:
    """The config of one dominance setting: its own data and runs under ``<output_dir>/dominance-<d>``."""
    return cfg.replace(
        **{
            "data.dominance": float(level),
            "experiment.output_dir": str(Path(cfg.experiment.output_dir) / _level_name(level)),
        }
    )


def summary_dir(cfg: EquisegConfig) -> Path:
    """Where the per-run summaries live (``experiment.summary_dir``, else ``<output_dir>/summaries``)."""
    return Path(cfg.experiment.summary_dir or Path(cfg.experiment.output_dir) / "summaries")


def summary_path(cfg: EquisegConfig, level: float, model: str, seed: int) -> Path:
    """The summary file of one run."""
    return summary_dir(cfg) / _level_name(level) / f"{model}-seed{seed}.json"


def planned_runs(cfg: EquisegConfig) -> set[tuple[float, str, int]]:
    """The runs the study plans, as ``(dominance, model, seed)``: every setting x model x seed."""
    ec = cfg.experiment
    return {(level, model, int(seed)) for level in study_levels(cfg) for model in ec.models for seed in ec.seeds}
