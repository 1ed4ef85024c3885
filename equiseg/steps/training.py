"""Pipeline step ``train``: the candidate, trained inside one MLflow run tagged with its lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from equiseg.config import EquisegConfig, config_hash
from equiseg.provenance import git_commit
from equiseg.steps.run_folder import TaskFacts, output_folder
from equiseg.tracking import Tracker, train_tracked

__all__ = ["TrainedCandidate", "lineage_tags", "train_candidate"]


@dataclass(frozen=True)
class TrainedCandidate:
    """The trained candidate: its best checkpoint, MLflow run and logged model."""

    checkpoint: Path
    mlflow_run_id: str
    model_uri: str
    config_hash: str = ""  # of the config it was trained with; registration must resolve the same one
    metrics: dict[str, float] = field(default_factory=dict)


def lineage_tags(cfg: EquisegConfig, *, pipeline_run_id: str, dataset_version: str) -> dict[str, str]:
    """Tags that tie an MLflow run or model version to its data, code, pipeline run and config."""
    return {
        "equiseg.dataset_version": dataset_version,
        "equiseg.git_commit": git_commit(),
        "equiseg.pipeline_run_id": pipeline_run_id,
        "equiseg.config_hash": config_hash(cfg),
        "equiseg.profile": cfg.profile,
    }


#: Files of the validation step logged to the training run under ``data/`` (the report renders offline).
DATA_REPORT_FILES = ("report.html", "stats.json", "quarantine.parquet")


def _log_data_report(tracker: Tracker, mlflow_run_id: str, data_dir: Path) -> None:
    """Log the data report the model was trained on to its run, so it is one click from the model version."""
    for name in DATA_REPORT_FILES:
        if (data_dir / name).is_file():
            tracker.log_to_run(mlflow_run_id, {}, artifacts=data_dir / name, artifact_path="data")
    if (data_dir / "report.html").is_file():
        tracker.log_to_run(mlflow_run_id, {}, tags={"equiseg.data_report": "data/report.html"})


def train_candidate(
    cfg: EquisegConfig,
    *,
    manifest: str | Path,
    data_root: str | Path,
    pipeline_run_id: str,
    dataset_version: str,
    out_dir: str | Path,
    data_report_dir: str | Path | None = None,
    facts: TaskFacts | None = None,
) -> TrainedCandidate:
    """Train the candidate into ``out_dir``, logging to one MLflow run with lineage tags, then log the model from its
    checkpoint. ``data_report_dir`` (the validation step's report folder) is logged to the run under ``data/``."""
    facts = facts if facts is not None else TaskFacts()
    folder = output_folder(cfg, out_dir)
    tracker = Tracker(cfg.tracking)
    tags = lineage_tags(cfg, pipeline_run_id=pipeline_run_id, dataset_version=dataset_version)
    run_name = f"train-{pipeline_run_id}"
    with facts.timed("train"):
        # train_tracked logs config, lineage, metrics, curves and the best model into one run.
        result = train_tracked(
            cfg,
            manifest=Path(manifest),
            data_root=Path(data_root),
            out_dir=folder,
            tracker=tracker,
            show_progress=False,
            run_name=run_name,
            tags=tags,
        )
    mlflow_run_id = result.mlflow_run_id
    if not result.model_uri:
        raise RuntimeError(f"training run {mlflow_run_id} logged no model; check the MLflow run for errors")
    if data_report_dir is not None:
        _log_data_report(tracker, str(mlflow_run_id), Path(data_report_dir))
    facts.record(
        mlflow_run_id=mlflow_run_id,
        model_uri=result.model_uri,
        train_metrics=result.metrics,
        train_config_hash=tags["equiseg.config_hash"],
    )
    return TrainedCandidate(
        checkpoint=Path(result.best_checkpoint),
        mlflow_run_id=str(mlflow_run_id),
        model_uri=result.model_uri,
        config_hash=tags["equiseg.config_hash"],
        metrics={k: float(v) for k, v in result.metrics.items()},
    )
